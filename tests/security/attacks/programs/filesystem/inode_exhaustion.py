# summary: exhaust the inodes of /tmp and /workspace (16384 each in the default policy)
import os

cap = 16384
escaped = []
for base in ("/tmp", "/workspace"):
    made = 0
    try:
        while made < 2 * cap:
            os.mkdir(f"{base}/d{made}") if made % 2 else open(f"{base}/f{made}", "w").close()
            made += 1
    except OSError as exc:
        print(base, "stopped after", made, exc)
    if made > cap:
        escaped.append(f"made {made} inodes in {base}")
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

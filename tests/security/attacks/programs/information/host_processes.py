# summary: see the host's processes: list /proc, read every cmdline, status and stat, look for a
#    host process by its arguments
# harness: secret
# control: host
import os
import sys

token = sys.argv[1]
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("visible pids:", pids)
found = []
for pid in (p for p in pids if p != os.getpid()):
    for name in ("cmdline", "environ", "status", "stat", "comm"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as file:
                if token.encode() in file.read():
                    found.append(f"/proc/{pid}/{name}")
        except OSError:
            pass
if len(pids) > 8:
    found.append(f"{len(pids)} processes are visible")
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

# summary: read another run's files: it writes a token to /workspace, /tmp and /dev/shm while we
#    search the whole tree
# harness: concurrent
import os
import sys

role, token = sys.argv[1], sys.argv[2]
if role == "victim":
    for place in ("/workspace", "/tmp", "/dev/shm"):
        with open(f"{place}/{token}", "w") as file:
            file.write(token)
    print("READY", flush=True)
    sys.stdin.read()
    print("HELD")
    sys.exit(0)
found = []
for top in ("/", "/proc/1/root", "/proc/1/cwd"):
    for root, dirs, files in os.walk(top):
        if root in ("/proc", "/sys", "/usr", "/proc/1/root/proc", "/proc/1/root/usr"):
            dirs.clear()
            continue
        for name in files + dirs:
            if token in name:
                found.append(os.path.join(root, name))
for line in found:
    print("ESCAPED found the other run's", line)
print("HELD" if not found else "")

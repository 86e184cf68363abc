# summary: share memory between concurrent runs through /dev/shm: a POSIX shared-memory object and a
#    plain file
# harness: concurrent
import mmap
import os
import sys

role, token = sys.argv[1], sys.argv[2]
if role == "victim":
    fd = os.open(f"/dev/shm/{token}", os.O_RDWR | os.O_CREAT, 0o666)
    os.write(fd, token.encode())
    os.chmod(f"/dev/shm/{token}", 0o666)
    print("READY", flush=True)
    sys.stdin.read()
    print("HELD")
    sys.exit(0)
found = [f"/dev/shm/{name}" for name in os.listdir("/dev/shm") if token in name]
try:
    region = mmap.mmap(os.open(f"/dev/shm/{token}", os.O_RDONLY), 0, prot=mmap.PROT_READ)
    found.append(f"mapped the other run's segment: {region[:40]!r}")
except (OSError, ValueError):
    pass
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

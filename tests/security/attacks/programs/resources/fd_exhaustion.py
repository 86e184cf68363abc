# summary: exhaust file descriptors (RLIMIT_NOFILE 256), then raise the limit and try again
import os
import resource

limit = 256
fds = []
try:
    while len(fds) < 100_000:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as exc:
    print("open stopped:", exc)
escaped = []
if len(fds) + 3 > limit:
    escaped.append(f"{len(fds) + 3} fds open")
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))
    escaped.append("raised RLIMIT_NOFILE")
except (OSError, ValueError) as exc:
    print("setrlimit:", exc)
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

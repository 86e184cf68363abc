# summary: find fds inherited from the supervisor or the caller and open the host through them
# harness: inherited-fds
# via: cli
import os
import stat
import sys

token = sys.argv[1]
escaped = []
for fd in range(3, 4096):
    try:
        st = os.fstat(fd)
    except OSError:
        continue
    escaped.append(f"fd {fd} is open at start: mode {stat.filemode(st.st_mode)}")
    for path in (token, f"../{token}", "."):
        try:
            with open(os.open(path, os.O_RDONLY, dir_fd=fd)) as file:
                escaped.append(f"read {path} through fd {fd}: {file.read(50)!r}")
        except (OSError, ValueError):
            pass
    try:
        os.fchdir(fd)
        escaped.append(f"fchdir into fd {fd}: {os.listdir('.')}")
    except OSError:
        pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

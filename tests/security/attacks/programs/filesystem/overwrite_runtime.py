# summary: overwrite the interpreter, /proc/self/exe, the shell, the loader and libc
import glob
import os
import sys

escaped = []
targets = [
    sys.executable,
    os.path.realpath(sys.executable),
    "/proc/self/exe",
    "/bin/sh",
    "/usr/bin/env",
    "/etc/ld.so.cache",
    os.__file__,
]
targets += (
    glob.glob("/lib*/ld-linux*") + glob.glob("/lib/*/libc.so*") + glob.glob("/usr/lib/*/libc.so*")
)
for target in targets:
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND, os.O_WRONLY | os.O_TRUNC):
        try:
            fd = os.open(target, flags)  # never written to: opening is the escape
            os.close(fd)
            escaped.append(f"opened {target} for writing (flags {flags:#o})")
            break
        except OSError:
            pass
    # no-ops if they were allowed (same size, same name): the host stays intact either way
    for action, call in (
        ("truncate", lambda t: os.truncate(t, os.path.getsize(t))),
        ("rename", lambda t: os.rename(t, t)),
    ):
        if target.startswith("/proc/"):  # a rename onto itself is a no-op success on procfs
            continue
        try:
            call(target)
            escaped.append(f"{action} {target}")
        except OSError:
            pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

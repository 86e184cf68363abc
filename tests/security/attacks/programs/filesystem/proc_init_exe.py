# summary: reach the run's init (a host interpreter process) through /proc/1: exe, fd, environ, maps
#    (runc CVE-2019-5736)
import glob
import os

escaped = []
for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY):
    try:
        fd = os.open("/proc/1/exe", flags)
        escaped.append(f"opened /proc/1/exe (flags {flags:#o})")
        os.close(fd)
    except OSError:
        pass
for path in (
    "/proc/1/environ",
    "/proc/1/maps",
    "/proc/1/auxv",
    "/proc/1/stack",
    "/proc/1/syscall",
    "/proc/1/io",
    "/proc/1/mem",
):
    try:
        with open(path, "rb") as file:
            data = file.read(64)
        escaped.append(f"read {path}: {data[:32]!r}")
    except OSError:
        pass
try:
    entries = os.listdir("/proc/1/fd")
    escaped.append(f"listed /proc/1/fd: {entries}")
except OSError:
    pass
for link in glob.glob("/proc/1/fd/*") + glob.glob("/proc/1/task/*/fd/*"):
    try:
        os.close(os.open(link, os.O_WRONLY))
        escaped.append(f"opened the init's {link} for writing")
    except OSError:
        pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

# summary: write into the init's memory through /proc/1/mem (the init shares the workload's uid) to
#    run code outside the filter
import os
from pathlib import Path

escaped = []
for path in ("/proc/1/mem", "/proc/1/task/1/mem"):
    for flags in (os.O_RDWR, os.O_WRONLY, os.O_RDONLY):
        try:
            fd = os.open(path, flags)
            escaped.append(f"opened {path} (flags {flags:#o})")
            os.close(fd)
        except OSError:
            pass
for path in (
    "/proc/1/setgroups",
    "/proc/1/uid_map",
    "/proc/1/attr/current",
    "/proc/1/comm",
    "/proc/1/timerslack_ns",
    "/proc/1/clear_refs",
    "/proc/1/coredump_filter",
):
    try:
        with open(path, "w") as file:
            file.write("1")
        escaped.append(f"wrote {path}")
    except OSError:
        pass
status = dict(
    line.split(":\t", 1)
    for line in Path("/proc/1/status").read_text().splitlines()
    if ":\t" in line
)
print("init uid:", status.get("Uid", "?").split())
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

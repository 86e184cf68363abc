# summary: read what /proc tells of the machine and other users (every user's keys and key
#    quotas, other processes' timers, the host's boot parameters and kernel build options)
#    and write PSI triggers (/proc/pressure/*, writable by everyone)
# control: host
import os

escaped = []
for name in ("keys", "key-users", "timer_list", "sched_debug", "latency_stats", "cmdline",
             "config.gz"):  # fmt: skip
    try:
        with open(f"/proc/{name}", "rb") as file:
            if data := file.read(4096):
                escaped.append(f"read /proc/{name}: {data[:60]!r}")
    except OSError as exc:
        print(f"/proc/{name}:", exc.strerror)
for name in ("acpi", "scsi", "asound"):
    if os.path.isdir(path := f"/proc/{name}") and os.listdir(path):
        escaped.append(f"listed {path}: {os.listdir(path)[:5]}")
if os.path.isdir("/proc/pressure") and not os.statvfs("/proc/pressure").f_flag & os.ST_RDONLY:
    escaped.append("/proc/pressure is on a writable mount")  # where triggers fail: EINVAL here
for resource in ("cpu", "memory", "io"):
    try:  # a trigger: wake when some task stalls 150 ms in a 2 s window (unprivileged users may
        # set triggers with windows that are multiples of 2 s)
        with open(f"/proc/pressure/{resource}", "w") as file:
            file.write("some 150000 2000000")
        escaped.append(f"set a PSI trigger on /proc/pressure/{resource}")
    except OSError as exc:
        print(f"/proc/pressure/{resource}:", exc.strerror)
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

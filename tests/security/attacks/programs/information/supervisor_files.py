# summary: reach the supervisor's open files: our fds at start, the fds, maps and fdinfo of every
#    visible process
import contextlib
import glob
import os

found = []
own = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
print("own fds:", own, [os.readlink(f"/proc/self/fd/{fd}") for fd in own if fd < 3])
if any(fd > 3 for fd in own):  # 3: the directory listing itself
    found.append(f"extra fds at start: {own}")
for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
    if pid == os.getpid():
        continue
    for path in [f"/proc/{pid}/fd", f"/proc/{pid}/fdinfo", f"/proc/{pid}/map_files"]:
        try:
            entries = os.listdir(path)
            if pid == 1:
                found.append(f"listed the init's {path}: {entries}")
        except OSError:
            pass
for link in glob.glob("/proc/1/fd/*") + glob.glob("/proc/1/task/*/fd/*"):
    with contextlib.suppress(OSError):
        found.append(f"{link} -> {os.readlink(link)}")
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

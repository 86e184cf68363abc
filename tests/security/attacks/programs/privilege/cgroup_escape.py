# summary: leave the run's cgroup (and its limits): find any cgroup filesystem, write our pid to a
#    parent's cgroup.procs, set release_agent
import os
from pathlib import Path

escaped = []
mounts = Path("/proc/self/mountinfo").read_text()
for line in mounts.splitlines():
    if " - cgroup" in line:
        escaped.append(f"a cgroup filesystem is mounted: {line}")
print("/proc/self/cgroup:", Path("/proc/self/cgroup").read_text().split())
for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/cgroup"):
    for name in (
        "cgroup.procs",
        "tasks",
        "release_agent",
        "notify_on_release",
        "memory.max",
        "memory.limit_in_bytes",
        "pids.max",
    ):
        path = os.path.join(root, name)
        try:
            with open(path, "w") as file:
                file.write(str(os.getpid()))
            escaped.append(f"wrote {path}")
        except OSError:
            pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

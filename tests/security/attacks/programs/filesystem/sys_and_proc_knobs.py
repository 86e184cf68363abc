# summary: write kernel knobs: /sys, sysrq-trigger, core_pattern, sysctls, oom_score_adj
import os

escaped = []
if os.path.exists("/sys/kernel") or os.path.exists("/sys/class"):
    escaped.append("/sys is mounted: " + ", ".join(sorted(os.listdir("/sys"))[:8]))
writes = {
    "/proc/sysrq-trigger": "h",  # help: harmless even if it got through
    "/proc/sys/kernel/core_pattern": "core",
    "/proc/sys/kernel/hostname": "sandbox",
    "/proc/sys/vm/drop_caches": "1",
    "/proc/sys/kernel/modprobe": "/sbin/modprobe",
    "/proc/sys/fs/protected_symlinks": "1",
    "/proc/sys/net/ipv4/ip_forward": "0",
    "/proc/sys/kernel/randomize_va_space": "2",
    "/proc/sys/user/max_user_namespaces": "10",
    "/sys/kernel/mm/transparent_hugepage/enabled": "madvise",
    "/sys/fs/cgroup/cgroup.procs": str(os.getpid()),
    "/sys/power/state": "freeze-not-a-state",
    "/proc/1/oom_score_adj": "0",
}
for path, value in writes.items():
    try:
        with open(path, "w") as file:
            file.write(value)
        escaped.append(f"wrote {path}")
    except OSError:
        pass
try:
    with open("/proc/self/oom_score_adj", "w") as file:
        file.write("-1000")
    escaped.append("lowered oom_score_adj below the inherited value (needs CAP_SYS_RESOURCE)")
except OSError:
    pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

"""cgroup v1: one directory per hierarchy (memory, pids, cpuacct, each only when mounted),
`<controller mount>/<our own cgroup>/stockade/<run>`, as `layout` plans."""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import posixpath

from stockade.kernel.cgroups.base import (
    CgroupLimits,
    CgroupStats,
    kill_all,
    mkdir,
    read,
    remove_run_dir,
    step,
    write,
)
from stockade.kernel.cgroups.layout import CgroupSupport, keyed, run_dirs


class CgroupV1:
    """One directory per v1 hierarchy: memory, pids, cpuacct (each only when mounted)."""

    def __init__(self, dirs: dict[str, str]) -> None:
        self.dirs = dirs  # controller -> run directory
        unique = tuple(dict.fromkeys(dirs.values()))  # co-mounted controllers share one
        self.procs_paths = tuple(posixpath.join(d, "cgroup.procs") for d in unique)
        # Joining through `tasks` moves the writing thread only, so the kernel skips its global
        # threadgroup lock, whose writer waits for an RCU grace period (5-20 ms here, against
        # 0.05 ms). Writing "0" from a process of one thread moves all of it.
        self.join_paths = tuple(posixpath.join(d, "tasks") for d in unique)
        self.clone_into = None  # CLONE_INTO_CGROUP takes a v2 cgroup only

    def apply(self, limits: CgroupLimits) -> None:
        if limits.memory is not None:
            memory = self.dirs["memory"]
            write(f"{memory}/memory.limit_in_bytes", str(limits.memory))
            # memory+swap capped at the same value means no swap; the file exists only with
            # swap accounting (swapaccount=1). swappiness 0 is a best effort without it.
            with contextlib.suppress(FileNotFoundError):
                write(f"{memory}/memory.memsw.limit_in_bytes", str(limits.memory))
            with contextlib.suppress(OSError):
                write(f"{memory}/memory.swappiness", "0")
            # v1 leaves TCP buffers out of the memory limit unless given a limit of their own
            # (v2 counts them): one run could queue gigabytes in the machine-wide tcp_mem pool.
            with contextlib.suppress(FileNotFoundError):
                write(f"{memory}/memory.kmem.tcp.limit_in_bytes", str(limits.memory))
        if limits.pids is not None:
            write(f"{self.dirs['pids']}/pids.max", str(limits.pids))

    def cpu_time(self) -> float:
        with step("cgroups.cpu_time"):
            return int(read(f"{self.dirs['cpu']}/cpuacct.usage")) / 1e9

    def stats(self) -> CgroupStats:
        memory = self.dirs.get("memory")
        if memory is None:
            return CgroupStats(self.cpu_time(), 0, False)
        with step("cgroups.stats"):
            peak = int(read(f"{memory}/memory.max_usage_in_bytes"))
            events = keyed(read(f"{memory}/memory.oom_control"))
            if "oom_kill" in events:  # kernel >= 4.13
                oom = events["oom_kill"] > 0
            else:  # older: failcnt counts every hit of the limit, so it may over-report
                oom = int(read(f"{memory}/memory.failcnt")) > 0
        return CgroupStats(self.cpu_time(), peak, oom)

    def kill(self) -> None:
        with step("cgroups.kill"):
            kill_all(self.procs_paths)

    def remove(self) -> None:
        # The kernel refuses to remove a cgroup that still has tasks, so try first and sweep
        # only if it refuses: at the end of a run its pid namespace has emptied it already.
        with step("cgroups.remove"):
            for procs in self.procs_paths:
                remove_run_dir(posixpath.dirname(procs), self.kill)


def make(support: CgroupSupport, name: str) -> CgroupV1:
    dirs = run_dirs(support, name)
    made: list[str] = []
    try:
        for path in dict.fromkeys(dirs.values()):  # co-mounted controllers share a directory
            mkdir(posixpath.dirname(path), exist_ok=True)
            mkdir(path, exist_ok=False)
            made.append(path)
    except BaseException:
        for path in made:  # still empty: nothing has joined yet
            remove_run_dir(path)
        raise
    return CgroupV1(dirs)

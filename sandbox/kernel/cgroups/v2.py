"""cgroup v2: one directory, `<mount>/stockade/<run>` (or under a delegated subtree), as
`layout` plans, with the controllers enabled on the way down."""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import os
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
from stockade.kernel.cgroups.layout import LEAF, CgroupSupport, keyed, run_dirs


class CgroupV2:
    """One directory in the unified hierarchy."""

    def __init__(self, path: str, controllers: frozenset[str]) -> None:
        self.path = path
        self.controllers = controllers  # enabled for this cgroup: memory, pids
        # v2 has no cheaper join: `cgroup.threads` works only inside a threaded subtree.
        self.join_paths = self.procs_paths = (f"{path}/cgroup.procs",)

    def apply(self, limits: CgroupLimits) -> None:
        if limits.memory is not None:
            write(f"{self.path}/memory.max", str(limits.memory))
            with contextlib.suppress(FileNotFoundError):  # absent without swap support
                write(f"{self.path}/memory.swap.max", "0")
        if limits.pids is not None:
            write(f"{self.path}/pids.max", str(limits.pids))

    def cpu_time(self) -> float:
        with step("cgroups.cpu_time"):
            return keyed(read(f"{self.path}/cpu.stat"))["usage_usec"] / 1e6

    def stats(self) -> CgroupStats:
        if "memory" not in self.controllers:
            return CgroupStats(self.cpu_time(), 0, False)
        with step("cgroups.stats"):
            try:  # memory.peak needs kernel >= 5.19; memory.current is all older ones have
                peak = int(read(f"{self.path}/memory.peak"))
            except FileNotFoundError:
                peak = int(read(f"{self.path}/memory.current"))
            oom = keyed(read(f"{self.path}/memory.events")).get("oom_kill", 0) > 0
        return CgroupStats(self.cpu_time(), peak, oom)

    def kill(self) -> None:
        with step("cgroups.kill"):
            # cgroup.kill (kernel >= 5.14) kills atomically, forks included; the sweep then
            # waits for the cgroup to empty, or does the whole job on older kernels.
            with contextlib.suppress(FileNotFoundError):
                write(f"{self.path}/cgroup.kill", "1")
            kill_all(self.procs_paths)

    def remove(self) -> None:
        with step("cgroups.remove"):  # as CgroupV1.remove
            remove_run_dir(self.path, self.kill)


def _enable_subtree(cgroup: str, controllers: frozenset[str]) -> None:
    present = set(read(f"{cgroup}/cgroup.subtree_control").split())
    for controller in sorted(controllers - present):
        write(f"{cgroup}/cgroup.subtree_control", f"+{controller}")


def make(support: CgroupSupport, name: str) -> CgroupV2:
    path = run_dirs(support, name)["cpu"]
    parent = posixpath.dirname(path)
    controllers = frozenset(c for c in ("memory", "pids") if support.controllers[c])
    base = posixpath.dirname(parent)
    if os.geteuid() != 0:
        _move_into_leaf(base)
    # The root cgroup may hold processes and still delegate; `stockade` holds none, so it can.
    _enable_subtree(base, controllers)
    mkdir(parent, exist_ok=True)
    _enable_subtree(parent, controllers)
    mkdir(path, exist_ok=False)
    return CgroupV2(path, controllers)


def _move_into_leaf(delegated: str) -> None:
    """Empty our delegated cgroup of its processes (ours: the scope was made for us) into a
    leaf, so that it may enable controllers for the run cgroups beside that leaf."""
    pids = read(f"{delegated}/cgroup.procs").split()
    if pids:
        mkdir(f"{delegated}/{LEAF}", exist_ok=True)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it may have exited meanwhile
                write(f"{delegated}/{LEAF}/cgroup.procs", pid)

"""cgroup v2: one directory, `<mount>/<our own cgroup>/stockade/<run>`, as `layout` plans,
with the controllers enabled on the way down (as root, only where they were off, and off
again after the last run: `ledger`), our own processes moved into a leaf beside `stockade`."""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import itertools
import os
import posixpath

from stockade.kernel.cgroups import ledger
from stockade.kernel.cgroups.base import (
    RMDIR_WINDOW,
    CgroupLimits,
    CgroupStats,
    kill_all,
    mkdir,
    read,
    remove_run_dir,
    rmdir,
    step,
    write,
)
from stockade.kernel.cgroups.layout import LEAF, CgroupSupport, keyed, run_dirs


class CgroupV2:
    """One directory in the unified hierarchy."""

    def __init__(self, path: str, controllers: frozenset[str], top: str = "") -> None:
        self.path = path
        self.controllers = controllers  # enabled for this cgroup: memory, pids
        self.top = top  # the cgroup2 mount point
        # Where clone3 cannot start a process in here (kernel < 5.7), it joins; v2 has no
        # cheaper join: `cgroup.threads` works only inside a threaded subtree.
        self.join_paths = self.procs_paths = (f"{path}/cgroup.procs",)
        self.clone_into = path

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
            if os.geteuid() != 0:
                remove_run_dir(self.path, self.kill)
                return
            rmdir(self.path, RMDIR_WINDOW, self.kill)
            _release(self.top, posixpath.dirname(self.path))


def make(support: CgroupSupport, name: str) -> CgroupV2:
    path = run_dirs(support, name)["cpu"]
    parent = posixpath.dirname(path)
    controllers = frozenset(c for c in ("memory", "pids") if support.controllers[c])
    if not _ready(parent, controllers):  # the first run under `parent`: prepare the way
        if os.geteuid() == 0:
            with ledger.held() as book:
                _prepare(support.mount, parent, controllers, book)
        else:
            _prepare_delegated(parent, controllers)
    mkdir(path, exist_ok=False)
    return CgroupV2(path, controllers, support.mount)


def _ready(parent: str, controllers: frozenset[str]) -> bool:
    try:
        return controllers <= set(read(f"{parent}/cgroup.subtree_control").split())
    except FileNotFoundError:
        return False


def _prepare(top: str, parent: str, controllers: frozenset[str], book: ledger.Ledger) -> None:
    """As root: the controllers on at each level from `top` down to our own cgroup (only
    where they are off, noted in the book), our processes into the leaf, then `parent`."""
    base = posixpath.dirname(parent)
    way = ledger.chain(top, base)
    for upper, lower in itertools.pairwise(way):
        missing = controllers - set(read(f"{lower}/cgroup.controllers").split())
        book.note(upper, _enable_subtree(upper, missing))
    if not is_root_cgroup(base):  # the root cgroup may hold processes and still give controllers
        _move_into_leaf(base)
    book.note(base, _enable_subtree(base, controllers))
    mkdir(parent, exist_ok=True)
    _enable_subtree(parent, controllers)


def _prepare_delegated(parent: str, controllers: frozenset[str]) -> None:
    """Without root: in the subtree delegated to us, which is ours to change."""
    base = posixpath.dirname(parent)
    _move_into_leaf(base)
    _enable_subtree(base, controllers)
    mkdir(parent, exist_ok=True)
    _enable_subtree(parent, controllers)


def _release(top: str, parent: str) -> None:
    """As root, after a run cgroup went: `parent` too once empty, and then the controllers
    we turned on for it (see ledger)."""
    with ledger.held() as book:
        try:
            rmdir(parent, 0)
        except OSError:  # other runs are in it (EBUSY, ENOTEMPTY): they need it all
            return
        for cgroup, controller in book.undo(top, posixpath.dirname(parent), LEAF):
            write(f"{cgroup}/cgroup.subtree_control", f"-{controller}")


def _enable_subtree(cgroup: str, controllers: frozenset[str]) -> frozenset[str]:
    """Turn `controllers` on for the children of `cgroup`; the ones that were off."""
    present = set(read(f"{cgroup}/cgroup.subtree_control").split())
    for controller in sorted(controllers - present):
        write(f"{cgroup}/cgroup.subtree_control", f"+{controller}")
    return frozenset(controllers - present)


def is_root_cgroup(cgroup: str) -> bool:
    # cgroup.type is in every cgroup but the root (a cgroup namespace's root included).
    return not os.path.exists(f"{cgroup}/cgroup.type")


def _move_into_leaf(base: str) -> None:
    """Empty our own cgroup of its processes (ours, and any the caller had there) into a
    leaf, so that it may enable controllers for the run cgroups beside that leaf; the limits
    on `base` cover them all still."""
    pids = read(f"{base}/cgroup.procs").split()
    if pids:
        mkdir(f"{base}/{LEAF}", exist_ok=True)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it may have exited meanwhile
                write(f"{base}/{LEAF}/cgroup.procs", pid)

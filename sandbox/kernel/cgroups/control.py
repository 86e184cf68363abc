"""cgroups: one cgroup per run, so limits and accounting hold for the whole process tree.

`create` makes it with the backend that `detect` found (`v1` or `v2`, behind the `Cgroup`
protocol of `base`), in the layout that `layout` plans: v2 `<mount>/stockade/<run>`, or v1
`<controller mount>/<our own cgroup>/stockade/<run>` in each hierarchy. A user on cgroup v2
with nothing delegated gets a transient systemd scope (`scope`), entered by the processes
that start runs (`for_runs`, `enter_scope`), never by the caller itself.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import errno
import functools
import os
import posixpath

from stockade.errors import SetupError, UnsupportedError
from stockade.kernel import syscalls as sc
from stockade.kernel.cgroups import base, v1, v2
from stockade.kernel.cgroups.base import (
    Cgroup,
    CgroupLimits,
    kill_all,
    needed,
    read,
    remove_run_dir,
    step,
)
from stockade.kernel.cgroups.layout import (
    DELEGATION_HINT,
    V1_SUBSYSTEM,
    CgroupMount,
    CgroupSupport,
    parse_mountinfo,
    parse_proc_cgroup,
    plan_scope,
    plan_support,
    refused_scope,
    scope_wanted,
    supervisor_pid,
    unsupported,
)


@functools.cache
def detect() -> CgroupSupport:
    """Where this process's run cgroups go, and which controllers there are. Read once per
    process (mountinfo parsing costs ~2 ms); callers warm it before forking supervisors."""
    return _detect()


def _detect(is_root: bool | None = None) -> CgroupSupport:
    try:
        with open("/proc/self/cgroup") as own, open("/proc/self/mountinfo") as mountinfo:
            own_paths, mounts = parse_proc_cgroup(own.read()), parse_mountinfo(mountinfo.read())
    except OSError as exc:
        return unsupported(f"cannot read /proc/self/cgroup or /proc/self/mountinfo: {exc}")
    enabled: frozenset[str] = frozenset()
    if mount := v2_mount(mounts):
        with contextlib.suppress(OSError):
            enabled = frozenset(read(f"{mount}/cgroup.controllers").split())
    root = os.geteuid() == 0 if is_root is None else is_root
    return plan_support(own_paths, mounts, enabled, root)


def v2_mount(mounts: list[CgroupMount] | None = None) -> str | None:
    if mounts is None:
        with open("/proc/self/mountinfo") as mountinfo:
            mounts = parse_mountinfo(mountinfo.read())
    v2 = [m.mount_point for m in mounts if m.version == 2]
    return v2[-1] if v2 else None


def as_root() -> CgroupSupport:
    """Where root's run cgroups would go from our cgroup: the directories to delegate (v1)."""
    return _detect(is_root=True)


_for_runs: CgroupSupport | None = None


def for_runs() -> CgroupSupport:
    """`detect()`, or where nothing is delegated to us on cgroup v2, what a transient systemd
    scope would offer (`scope_bus` set), or why there is none: once per process."""
    global _for_runs
    if _for_runs is None:
        support = detect()
        if scope_wanted(support, os.geteuid() == 0):
            support = _offer_a_scope(support)
        _for_runs = support
    return _for_runs


def _offer_a_scope(support: CgroupSupport) -> CgroupSupport:
    from stockade.kernel.cgroups import scope  # D-Bus: only for this case

    bus = scope.bus_address()
    try:
        manager = scope.manager_cgroup(bus)
        delegatable = frozenset(read(f"{v2_mount()}{manager}/cgroup.controllers").split())
    except UnsupportedError as exc:
        return refused_scope(support, exc.missing)
    except OSError as exc:
        return refused_scope(support, f"cannot read the user manager's controllers: {exc}")
    return plan_scope(delegatable, bus)


def enter_scope(bus: str) -> None:
    """Move this process (the spawn server, doctor's probe) into a transient systemd scope of
    its own, asked for at `bus`: the run cgroups it and its children make go there. If it
    cannot, runs here are refused (or fall back, under best_effort) saying why."""
    from stockade.kernel.cgroups import scope

    global _for_runs
    try:
        scope.enter(bus)
    except UnsupportedError as exc:
        _for_runs = refused_scope(detect(), exc.missing)
        return
    detect.cache_clear()
    _for_runs = detect()


def require(limits: CgroupLimits) -> None:
    """Raise UnsupportedError, with its hint, when this machine has no cgroup controller a run
    with `limits` needs (none, or not delegated to us): cheap after the first `detect`."""
    support = for_runs()
    for controller in needed(limits):
        if not support.controllers[controller]:
            label = V1_SUBSYSTEM[controller] if support.version == 1 else controller
            version = f"v{support.version} " if support.version else ""
            raise UnsupportedError(
                f"cgroup {version}{label} controller", support.reasons[controller]
            )


def create(name: str, limits: CgroupLimits) -> Cgroup:
    """Make the run's cgroup with `limits` applied. `name` is "<supervisor pid>-<counter>"."""
    if supervisor_pid(name) is None:
        raise ValueError(f"cgroup run name {name!r} is not '<pid>-<counter>'")
    require(limits)
    support = for_runs()
    assert support.scope_bus is None, "enter_scope() first: this process is not in its scope"
    for attempt in range(3):
        try:
            with step("cgroups.create"):
                return _create_once(support, name, limits)
        except SetupError as exc:
            # ENOENT: a concurrent remove() took the empty parent away; make it again.
            if exc.errno != errno.ENOENT or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _create_once(support: CgroupSupport, name: str, limits: CgroupLimits) -> Cgroup:
    try:
        cgroup: v1.CgroupV1 | v2.CgroupV2 = (
            v2.make(support, name) if support.version == 2 else v1.make(support, name)
        )
    except PermissionError as exc:
        raise UnsupportedError(
            f"write access to the cgroup hierarchy ({exc.strerror}: {exc.filename})",
            DELEGATION_HINT,
        ) from exc
    try:
        cgroup.apply(limits)
    except BaseException:
        with contextlib.suppress(SetupError):  # let the first error be the one reported
            cgroup.remove()
        raise
    return cgroup


_CLONE3_MISSING = (errno.ENOSYS, errno.E2BIG, errno.EINVAL)  # < 5.3, < 5.7, or filtered
_can_clone_into = True  # until the kernel (or a container's seccomp profile) says otherwise


def fork_into(cgroup: Cgroup | None) -> tuple[int, tuple[str, ...]]:
    """Fork a single-threaded caller's child into `cgroup`: (0 in the child, its pid in the
    parent; the files the child must still write "0" into to join). Born in the cgroup
    where the kernel can (v2 and clone3 with CLONE_INTO_CGROUP, kernel >= 5.7: no join, and
    it never runs outside its limits), else an ordinary fork that joins first thing."""
    global _can_clone_into
    if cgroup is None:
        return os.fork(), ()
    if cgroup.clone_into is not None and _can_clone_into:
        try:
            with base.open_dir(cgroup.clone_into) as fd:
                return sc.clone_into_cgroup(fd), ()
        except OSError as exc:
            if exc.errno not in _CLONE3_MISSING:
                raise
            _can_clone_into = False
    return os.fork(), cgroup.join_paths


def cleanup_stale() -> None:
    """Remove the run cgroups of supervisors that died without cleaning up, tasks first.

    Best effort: what cannot go now (a task stuck in the kernel) is tried again next time.
    Liveness is judged in our own pid namespace; a recycled pid keeps its cgroup until later.
    """
    support = detect()
    for parent in set(support.paths.values()):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            pid = supervisor_pid(name)
            if pid is not None and not _alive(pid):
                _remove_stale(support, posixpath.join(parent, name))


def _remove_stale(support: CgroupSupport, path: str) -> None:
    with contextlib.suppress(OSError, SetupError):
        if support.version == 2:  # the backend's own removal: it also undoes what it enabled
            v2.CgroupV2(path, frozenset(), support.mount).remove()
        else:
            kill_all((f"{path}/cgroup.procs",))
            remove_run_dir(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""cgroups: one cgroup per run, so limits and accounting hold for the whole process tree.

`create` makes it with the backend that `detect` found (`v1` or `v2`, behind the `Cgroup`
protocol of `base`), in the layout that `layout` plans: v2 `<mount>/stockade/<run>`, or v1
`<controller mount>/<our own cgroup>/stockade/<run>` in each hierarchy.
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
    CgroupSupport,
    parse_mountinfo,
    parse_proc_cgroup,
    plan_support,
    supervisor_pid,
    unsupported,
)


@functools.cache
def detect() -> CgroupSupport:
    """Where this process's run cgroups go, and which controllers there are. Read once per
    process (mountinfo parsing costs ~2 ms); callers warm it before forking supervisors."""
    return _detect()


def _detect() -> CgroupSupport:
    try:
        with open("/proc/self/cgroup") as own, open("/proc/self/mountinfo") as mountinfo:
            own_paths, mounts = parse_proc_cgroup(own.read()), parse_mountinfo(mountinfo.read())
    except OSError as exc:
        return unsupported(f"cannot read /proc/self/cgroup or /proc/self/mountinfo: {exc}")
    v2 = [m for m in mounts if m.version == 2]
    enabled: frozenset[str] = frozenset()
    if v2:
        with contextlib.suppress(OSError):
            enabled = frozenset(read(f"{v2[-1].mount_point}/cgroup.controllers").split())
    return plan_support(own_paths, mounts, enabled, os.geteuid() == 0)


def require(limits: CgroupLimits) -> None:
    """Raise UnsupportedError, with its hint, when this machine has no cgroup controller a run
    with `limits` needs (none, or not delegated to us): cheap after the first `detect`."""
    support = detect()
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
    support = detect()
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

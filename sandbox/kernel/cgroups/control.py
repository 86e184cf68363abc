"""cgroups: one cgroup per run, so limits and accounting hold for the whole process tree.

Two backends behind the small `Cgroup` protocol (nsjail's cgroup.cc / cgroup2.cc split), in
the layout that `cgroup_layout.py` plans: v2 `<mount>/stockade/<run>`, or v1
`<controller mount>/<our own cgroup>/stockade/<run>` in each hierarchy. Everything here is
short verbs on file descriptors opened without following symlinks.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import errno
import functools
import os
import posixpath
import signal
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

from stockade.errors import SetupError, UnsupportedError
from stockade.kernel.cgroups.layout import (
    CONTROLLERS,
    DELEGATION_HINT,
    LEAF,
    V1_SUBSYSTEM,
    CgroupSupport,
    keyed,
    parse_mountinfo,
    parse_proc_cgroup,
    plan_support,
    run_dirs,
    supervisor_pid,
    unsupported,
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KILL_WINDOW = 2.0  # seconds kill() keeps sweeping before it leaves the rest to remove()
_RMDIR_WINDOW = 1.0  # seconds remove() retries EBUSY while dying tasks are released


class CgroupLimits(NamedTuple):
    memory: int | None  # bytes; None = no limit
    pids: int | None  # most tasks at once


class CgroupStats(NamedTuple):
    cpu_time: float  # seconds, whole tree
    peak_memory: int  # bytes, 0 if unknown
    oom_killed: bool  # the kernel's OOM killer killed something in this cgroup


class Cgroup(Protocol):
    join_paths: tuple[str, ...]  # files a new, single-threaded process writes "0" into to join
    procs_paths: tuple[str, ...]  # the cgroup.procs files: who is in it (one per hierarchy)

    def cpu_time(self) -> float: ...  # cheap: polled during a run
    def stats(self) -> CgroupStats: ...
    def kill(self) -> None: ...  # SIGKILL every process in it
    def remove(self) -> None: ...  # rmdir, killing what is in it first; idempotent


def needed(limits: CgroupLimits) -> tuple[str, ...]:
    """The controllers `limits` needs; CPU accounting always."""
    wanted = {"cpu": True, "memory": limits.memory is not None, "pids": limits.pids is not None}
    return tuple(c for c in CONTROLLERS if wanted[c])


@contextlib.contextmanager
def _step(step: str) -> Iterator[None]:
    """Report an OSError as the SetupError of `step`, at the module's boundary."""
    try:
        yield
    except OSError as exc:
        raise SetupError(step, exc.errno or 0, str(exc)) from exc


@contextlib.contextmanager
def _open_dir(path: str) -> Iterator[int]:
    """An fd on `path`, opened one component at a time, never through a symlink."""
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in filter(None, path.split("/")):
            if part in (".", ".."):
                raise OSError(errno.EINVAL, "not a plain path", path)
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def _open_file(path: str, flags: int) -> int:
    with _open_dir(posixpath.dirname(path)) as dir_fd:
        name = posixpath.basename(path)
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _read(path: str) -> str:
    fd = _open_file(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as file:  # loops to EOF: cgroup.procs may outgrow one read
        return file.read().decode()


def _write(path: str, value: str) -> None:
    fd = _open_file(path, os.O_WRONLY | os.O_TRUNC)  # as `echo >` does; plain files in tests
    try:
        os.write(fd, value.encode())  # one write(2): a cgroup file takes each write as a command
    finally:
        os.close(fd)


def _mkdir(path: str, exist_ok: bool) -> None:
    with _open_dir(posixpath.dirname(path)) as dir_fd:
        try:
            os.mkdir(posixpath.basename(path), 0o755, dir_fd=dir_fd)
        except FileExistsError:
            if not exist_ok:
                raise


def _rmdir(path: str, window: float, sweep: Callable[[], None] | None = None) -> None:
    """rmdir without following symlinks; gone already is fine. EBUSY (tasks in it) runs
    `sweep` once, then is retried for `window` (tasks still dying)."""
    deadline = time.monotonic() + window
    while True:
        try:
            with _open_dir(posixpath.dirname(path)) as dir_fd:
                os.rmdir(posixpath.basename(path), dir_fd=dir_fd)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise
            if sweep is not None:
                sweep()  # it returns once the cgroup has emptied, or its own window is over
                sweep = None
            else:
                time.sleep(0.01)


def _members(procs_files: tuple[str, ...]) -> set[int]:
    pids: set[int] = set()
    for path in procs_files:
        with contextlib.suppress(FileNotFoundError):
            pids.update(int(p) for p in _read(path).split())
    pids.discard(0)  # a task in a pid namespace we cannot see; kill(0) would hit our own group
    return pids


def _sweep(procs_files: tuple[str, ...]) -> bool:
    """SIGKILL every member once; False when there was none.

    Each process is pinned by a pidfd before its membership is read again, so a pid that an
    unrelated process took over in between is never signalled.
    """
    pids = _members(procs_files)
    if not pids:
        return False
    pinned: dict[int, int | None] = {}
    for pid in pids:
        try:
            pinned[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        except OSError:  # no pidfd_open (kernel < 5.3): plain kill(2) below
            pinned[pid] = None
    try:
        still = _members(procs_files)
        for pid, fd in pinned.items():
            with contextlib.suppress(ProcessLookupError):
                if pid in still and fd is not None:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                elif pid in still:
                    os.kill(pid, signal.SIGKILL)
    finally:
        for fd in pinned.values():
            if fd is not None:
                os.close(fd)
    return True


def _kill_all(procs_files: tuple[str, ...]) -> None:
    """Sweep until the cgroup is empty (a task forking meanwhile is caught by the next sweep)."""
    deadline, pause = time.monotonic() + _KILL_WINDOW, 0.001
    while _sweep(procs_files) and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


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

    def apply(self, limits: CgroupLimits) -> None:
        if limits.memory is not None:
            memory = self.dirs["memory"]
            _write(f"{memory}/memory.limit_in_bytes", str(limits.memory))
            # memory+swap capped at the same value means no swap; the file exists only with
            # swap accounting (swapaccount=1). swappiness 0 is a best effort without it.
            with contextlib.suppress(FileNotFoundError):
                _write(f"{memory}/memory.memsw.limit_in_bytes", str(limits.memory))
            with contextlib.suppress(OSError):
                _write(f"{memory}/memory.swappiness", "0")
            # v1 leaves TCP buffers out of the memory limit unless given a limit of their own
            # (v2 counts them): one run could queue gigabytes in the machine-wide tcp_mem pool.
            with contextlib.suppress(FileNotFoundError):
                _write(f"{memory}/memory.kmem.tcp.limit_in_bytes", str(limits.memory))
        if limits.pids is not None:
            _write(f"{self.dirs['pids']}/pids.max", str(limits.pids))

    def cpu_time(self) -> float:
        with _step("cgroups.cpu_time"):
            return int(_read(f"{self.dirs['cpu']}/cpuacct.usage")) / 1e9

    def stats(self) -> CgroupStats:
        memory = self.dirs.get("memory")
        if memory is None:
            return CgroupStats(self.cpu_time(), 0, False)
        with _step("cgroups.stats"):
            peak = int(_read(f"{memory}/memory.max_usage_in_bytes"))
            events = keyed(_read(f"{memory}/memory.oom_control"))
            if "oom_kill" in events:  # kernel >= 4.13
                oom = events["oom_kill"] > 0
            else:  # older: failcnt counts every hit of the limit, so it may over-report
                oom = int(_read(f"{memory}/memory.failcnt")) > 0
        return CgroupStats(self.cpu_time(), peak, oom)

    def kill(self) -> None:
        with _step("cgroups.kill"):
            _kill_all(self.procs_paths)

    def remove(self) -> None:
        # The kernel refuses to remove a cgroup that still has tasks, so try first and sweep
        # only if it refuses: at the end of a run its pid namespace has emptied it already.
        with _step("cgroups.remove"):
            for procs in self.procs_paths:
                _remove_run_dir(posixpath.dirname(procs), self.kill)


class CgroupV2:
    """One directory in the unified hierarchy."""

    def __init__(self, path: str, controllers: frozenset[str]) -> None:
        self.path = path
        self.controllers = controllers  # enabled for this cgroup: memory, pids
        # v2 has no cheaper join: `cgroup.threads` works only inside a threaded subtree.
        self.join_paths = self.procs_paths = (f"{path}/cgroup.procs",)

    def apply(self, limits: CgroupLimits) -> None:
        if limits.memory is not None:
            _write(f"{self.path}/memory.max", str(limits.memory))
            with contextlib.suppress(FileNotFoundError):  # absent without swap support
                _write(f"{self.path}/memory.swap.max", "0")
        if limits.pids is not None:
            _write(f"{self.path}/pids.max", str(limits.pids))

    def cpu_time(self) -> float:
        with _step("cgroups.cpu_time"):
            return keyed(_read(f"{self.path}/cpu.stat"))["usage_usec"] / 1e6

    def stats(self) -> CgroupStats:
        if "memory" not in self.controllers:
            return CgroupStats(self.cpu_time(), 0, False)
        with _step("cgroups.stats"):
            try:  # memory.peak needs kernel >= 5.19; memory.current is all older ones have
                peak = int(_read(f"{self.path}/memory.peak"))
            except FileNotFoundError:
                peak = int(_read(f"{self.path}/memory.current"))
            oom = keyed(_read(f"{self.path}/memory.events")).get("oom_kill", 0) > 0
        return CgroupStats(self.cpu_time(), peak, oom)

    def kill(self) -> None:
        with _step("cgroups.kill"):
            # cgroup.kill (kernel >= 5.14) kills atomically, forks included; the sweep then
            # waits for the cgroup to empty, or does the whole job on older kernels.
            with contextlib.suppress(FileNotFoundError):
                _write(f"{self.path}/cgroup.kill", "1")
            _kill_all(self.procs_paths)

    def remove(self) -> None:
        with _step("cgroups.remove"):  # as CgroupV1.remove
            _remove_run_dir(self.path, self.kill)


def _remove_run_dir(path: str, sweep: Callable[[], None] | None = None) -> None:
    _rmdir(path, _RMDIR_WINDOW, sweep)
    # The shared parent goes too once empty, so the host's tree is left as we found it; a
    # concurrent create() that loses its parent this way simply makes it again. A parent
    # someone else owns was delegated by an administrator: it stays.
    parent = posixpath.dirname(path)
    with contextlib.suppress(OSError):
        if os.stat(parent).st_uid == os.geteuid():
            _rmdir(parent, 0)


def _enable_subtree(cgroup: str, controllers: frozenset[str]) -> None:
    present = set(_read(f"{cgroup}/cgroup.subtree_control").split())
    for controller in sorted(controllers - present):
        _write(f"{cgroup}/cgroup.subtree_control", f"+{controller}")


def _make_v2(support: CgroupSupport, name: str) -> CgroupV2:
    path = run_dirs(support, name)["cpu"]
    parent = posixpath.dirname(path)
    controllers = frozenset(c for c in ("memory", "pids") if support.controllers[c])
    base = posixpath.dirname(parent)
    if os.geteuid() != 0:
        _move_into_leaf(base)
    # The root cgroup may hold processes and still delegate; `stockade` holds none, so it can.
    _enable_subtree(base, controllers)
    _mkdir(parent, exist_ok=True)
    _enable_subtree(parent, controllers)
    _mkdir(path, exist_ok=False)
    return CgroupV2(path, controllers)


def _move_into_leaf(delegated: str) -> None:
    """Empty our delegated cgroup of its processes (ours: the scope was made for us) into a
    leaf, so that it may enable controllers for the run cgroups beside that leaf."""
    pids = _read(f"{delegated}/cgroup.procs").split()
    if pids:
        _mkdir(f"{delegated}/{LEAF}", exist_ok=True)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it may have exited meanwhile
                _write(f"{delegated}/{LEAF}/cgroup.procs", pid)


def _make_v1(support: CgroupSupport, name: str) -> CgroupV1:
    dirs = run_dirs(support, name)
    made: list[str] = []
    try:
        for path in dict.fromkeys(dirs.values()):  # co-mounted controllers share a directory
            _mkdir(posixpath.dirname(path), exist_ok=True)
            _mkdir(path, exist_ok=False)
            made.append(path)
    except BaseException:
        for path in made:  # still empty: nothing has joined yet
            _remove_run_dir(path)
        raise
    return CgroupV1(dirs)


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
            enabled = frozenset(_read(f"{v2[-1].mount_point}/cgroup.controllers").split())
    return plan_support(own_paths, mounts, enabled, os.geteuid() == 0)


def _require(support: CgroupSupport, limits: CgroupLimits) -> None:
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
    support = detect()
    _require(support, limits)
    for attempt in range(3):
        try:
            with _step("cgroups.create"):
                return _create_once(support, name, limits)
        except SetupError as exc:
            # ENOENT: a concurrent remove() took the empty parent away; make it again.
            if exc.errno != errno.ENOENT or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _create_once(support: CgroupSupport, name: str, limits: CgroupLimits) -> Cgroup:
    try:
        cgroup: CgroupV1 | CgroupV2 = (
            _make_v2(support, name) if support.version == 2 else _make_v1(support, name)
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


def cleanup_stale() -> None:
    """Remove the run cgroups of supervisors that died without cleaning up, tasks first.

    Best effort: what cannot go now (a task stuck in the kernel) is tried again next time.
    Liveness is judged in our own pid namespace; a recycled pid keeps its cgroup until later.
    """
    for parent in set(detect().paths.values()):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            pid = supervisor_pid(name)
            if pid is not None and not _alive(pid):
                path = posixpath.join(parent, name)
                with contextlib.suppress(OSError):
                    _kill_all((f"{path}/cgroup.procs",))
                    _remove_run_dir(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""cgroups, the common part: the records, the `Cgroup` protocol both backends satisfy, and
short verbs on file descriptors opened without following symlinks (nsjail's cgroup.cc /
cgroup2.cc split puts the backends in `v1` and `v2`; `control` picks one and makes it).
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import errno
import os
import posixpath
import signal
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

from stockade.errors import SetupError
from stockade.kernel.cgroups.layout import CONTROLLERS

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
KILL_WINDOW = 2.0  # seconds kill() keeps sweeping before it leaves the rest to remove()
RMDIR_WINDOW = 1.0  # seconds remove() retries EBUSY while dying tasks are released


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
    clone_into: str | None  # v2: the directory a process can be born in (clone3); v1: None

    def cpu_time(self) -> float: ...  # cheap: polled during a run
    def stats(self) -> CgroupStats: ...
    def kill(self) -> None: ...  # SIGKILL every process in it
    def remove(self) -> None: ...  # rmdir, killing what is in it first; idempotent


def needed(limits: CgroupLimits) -> tuple[str, ...]:
    """The controllers `limits` needs; CPU accounting always."""
    wanted = {"cpu": True, "memory": limits.memory is not None, "pids": limits.pids is not None}
    return tuple(c for c in CONTROLLERS if wanted[c])


@contextlib.contextmanager
def step(step: str) -> Iterator[None]:
    """Report an OSError as the SetupError of `step`, at the module's boundary."""
    try:
        yield
    except OSError as exc:
        raise SetupError(step, exc.errno or 0, str(exc)) from exc


@contextlib.contextmanager
def open_dir(path: str) -> Iterator[int]:
    """An fd on `path`, opened one component at a time, never through a symlink."""
    fd = os.open("/", DIR_FLAGS)
    try:
        for part in filter(None, path.split("/")):
            if part in (".", ".."):
                raise OSError(errno.EINVAL, "not a plain path", path)
            next_fd = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def open_file(path: str, flags: int) -> int:
    with open_dir(posixpath.dirname(path)) as dir_fd:
        name = posixpath.basename(path)
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def read(path: str) -> str:
    fd = open_file(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as file:  # loops to EOF: cgroup.procs may outgrow one read
        return file.read().decode()


def write(path: str, value: str) -> None:
    fd = open_file(path, os.O_WRONLY | os.O_TRUNC)  # as `echo >` does; plain files in tests
    try:
        os.write(fd, value.encode())  # one write(2): a cgroup file takes each write as a command
    finally:
        os.close(fd)


def mkdir(path: str, exist_ok: bool) -> None:
    with open_dir(posixpath.dirname(path)) as dir_fd:
        try:
            os.mkdir(posixpath.basename(path), 0o755, dir_fd=dir_fd)
        except FileExistsError:
            if not exist_ok:
                raise


def rmdir(path: str, window: float, sweep: Callable[[], None] | None = None) -> None:
    """rmdir without following symlinks; gone already is fine. EBUSY (tasks in it) runs
    `sweep` once, then is retried for `window` (tasks still dying)."""
    deadline = time.monotonic() + window
    while True:
        try:
            with open_dir(posixpath.dirname(path)) as dir_fd:
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


def members(procs_files: tuple[str, ...]) -> set[int]:
    pids: set[int] = set()
    for path in procs_files:
        with contextlib.suppress(FileNotFoundError):
            pids.update(int(p) for p in read(path).split())
    pids.discard(0)  # a task in a pid namespace we cannot see; kill(0) would hit our own group
    return pids


def sweep(procs_files: tuple[str, ...]) -> bool:
    """SIGKILL every member once; False when there was none.

    Each process is pinned by a pidfd before its membership is read again, so a pid that an
    unrelated process took over in between is never signalled.
    """
    pids = members(procs_files)
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
        still = members(procs_files)
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


def kill_all(procs_files: tuple[str, ...]) -> None:
    """Sweep until the cgroup is empty (a task forking meanwhile is caught by the next sweep)."""
    deadline, pause = time.monotonic() + KILL_WINDOW, 0.001
    while sweep(procs_files) and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def remove_run_dir(path: str, sweep: Callable[[], None] | None = None) -> None:
    rmdir(path, RMDIR_WINDOW, sweep)
    # The shared parent goes too once empty, so the host's tree is left as we found it; a
    # concurrent create() that loses its parent this way simply makes it again. A parent
    # someone else owns was delegated by an administrator: it stays.
    parent = posixpath.dirname(path)
    with contextlib.suppress(OSError):
        if os.stat(parent).st_uid == os.geteuid():
            rmdir(parent, 0)

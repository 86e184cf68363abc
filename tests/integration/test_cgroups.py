"""kernel/cgroups/control.py against the real kernel: limits hold, accounting counts, kill and
remove leave nothing. Runs with whatever backend `detect()` picks (v1 on the test machine);
each test skips, naming the controller, when that controller is not available."""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from stockade.kernel.cgroups import base
from stockade.kernel.cgroups import control as cgroups
from stockade.kernel.cgroups import layout as cgroup_layout
from stockade.kernel.cgroups.base import Cgroup, CgroupLimits

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroup directories)")

SUPPORT = cgroups.detect()
_names = itertools.count()


def needs(*controllers: str) -> pytest.MarkDecorator:
    missing = [c for c in controllers if not SUPPORT.controllers[c]]
    label = {"cpu": "cpu accounting (cpuacct)"}
    reason = "; ".join(
        f"cgroup {label.get(c, c)} controller not available: {SUPPORT.reasons[c]}" for c in missing
    )
    return pytest.mark.skipif(bool(missing), reason=reason)


def _run_cgroups() -> set[str]:
    found = set()
    for parent in set(cgroups.detect().paths.values()):
        with contextlib.suppress(FileNotFoundError):
            paths = (os.path.join(parent, n) for n in os.listdir(parent))
            found.update(p for p in paths if os.path.isdir(p))  # run cgroups, not control files
    return found


def _someone_elses(path: str) -> bool:
    """A run of another live supervisor (tests of other modules may run meanwhile)."""
    pid = cgroup_layout.supervisor_pid(os.path.basename(path))
    return pid is not None and pid != os.getpid() and psutil.pid_exists(pid)


@pytest.fixture(autouse=True)
def no_run_cgroup_left() -> Iterator[None]:
    before = _run_cgroups()
    yield
    left = {p for p in _run_cgroups() - before if not _someone_elses(p)}
    assert not left, f"run cgroups left behind: {left}"


@pytest.fixture
def make() -> Iterator[Callable[..., Cgroup]]:
    made: list[Cgroup] = []

    def make(memory: int | None = None, pids: int | None = None, name: str = "") -> Cgroup:
        cgroup = cgroups.create(
            name or f"{os.getpid()}-t{next(_names)}", CgroupLimits(memory, pids)
        )
        made.append(cgroup)
        return cgroup

    yield make
    for cgroup in made:
        cgroup.remove()


def start(cgroup: Cgroup, body: Callable[[], int]) -> int:
    """Fork a child that joins `cgroup` the way child.py does, runs `body`, exits with it."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            for path in cgroup.join_paths:
                with open(path, "w") as joined:
                    joined.write("0")
            code = body()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait(pid: int, within: float = 10.0) -> int:
    """The child's wait status; fails (instead of hanging) if it outlives `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"child {pid} still running after {within} s")


def members(cgroup: Cgroup) -> set[int]:
    return {int(p) for path in cgroup.procs_paths for p in Path(path).read_text().split()}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ------------------------------------------------------------------ limits


def allocate_256m() -> int:
    block = bytearray(256 << 20)  # zero-filled, so every page is touched
    return 0 if block[-1] == 0 else 1


@needs("memory", "cpu")
def test_memory_limit_kills_the_allocation_and_reports_oom(make: Callable[..., Cgroup]) -> None:
    cgroup = make(memory=64 << 20)
    status = wait(start(cgroup, allocate_256m))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert cgroup.stats().oom_killed


@needs("memory", "cpu")
def test_without_memory_limit_the_same_allocation_succeeds(make: Callable[..., Cgroup]) -> None:
    cgroup = make()
    status = wait(start(cgroup, allocate_256m))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    stats = cgroup.stats()
    assert not stats.oom_killed
    assert stats.peak_memory >= 256 << 20


def fork_twenty() -> int:
    """Exit code: how many forks succeeded before EAGAIN, or 200 if none failed."""
    for count in range(20):
        try:
            child = os.fork()
        except BlockingIOError:  # EAGAIN: pids.max reached
            return count
        if child == 0:
            signal.pause()
            os._exit(0)
    return 200


@needs("pids", "cpu")
def test_pids_limit_makes_fork_fail_with_eagain(make: Callable[..., Cgroup]) -> None:
    cgroup = make(pids=8)
    status = wait(start(cgroup, fork_twenty))
    assert os.WIFEXITED(status)
    assert 0 < os.WEXITSTATUS(status) <= 7  # the forking child itself is one of the 8


@needs("pids", "cpu")
def test_without_pids_limit_twenty_forks_succeed(make: Callable[..., Cgroup]) -> None:
    cgroup = make()
    status = wait(start(cgroup, fork_twenty))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 200


# ------------------------------------------------------------------ accounting


def spin_with_16m() -> int:
    block = bytearray(16 << 20)
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    return block[0]


@needs("cpu")
def test_cpu_time_counts_the_tree(make: Callable[..., Cgroup]) -> None:
    cgroup = make()
    assert cgroup.cpu_time() < 0.05
    assert wait(start(cgroup, spin_with_16m)) == 0
    assert cgroup.cpu_time() >= 0.2
    assert cgroup.stats().cpu_time >= 0.2


@needs("memory", "cpu")
def test_peak_memory_is_measured(make: Callable[..., Cgroup]) -> None:
    cgroup = make()
    assert wait(start(cgroup, spin_with_16m)) == 0
    assert cgroup.stats().peak_memory >= 16 << 20


# ------------------------------------------------------------------ fork into


@needs("cpu")
@pytest.mark.parametrize("clone3", [True, False], ids=["clone3", "fork-and-join"])
def test_fork_into_starts_the_child_in_its_cgroup_on_v2(
    make: Callable[..., Cgroup], clone3: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On v2 (kernel >= 5.7) the run's init is born in its cgroup: nothing to join. Else (v1,
    or clone3 refused) it is forked where we are and given the files to join. The child
    reports its cgroup before doing anything else."""
    cgroup = make(pids=8)
    monkeypatch.setattr(cgroups, "_can_clone_into", clone3)
    r, w = os.pipe()
    pid, join = cgroups.fork_into(cgroup)
    if pid == 0:
        os.write(w, Path("/proc/self/cgroup").read_bytes())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as reader:
        seen = reader.read().decode()
    assert wait(pid) == 0
    if SUPPORT.version == 2 and clone3:
        assert join == ()
        assert cgroup.clone_into is not None
        assert seen == f"0::/{os.path.relpath(cgroup.clone_into, SUPPORT.mount)}\n"
    else:
        assert join == cgroup.join_paths
        assert seen == Path("/proc/self/cgroup").read_text()  # not in it until it joins


# ------------------------------------------------------------------ kill, remove, cleanup


def stubborn_tree(report: int) -> Callable[[], int]:
    """Three double-forked, setsid'd daemons and their starter, all ignoring SIGTERM."""

    def body() -> int:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _ in range(3):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.write(report, f"{os.getpid()}\n".encode())
                    while True:
                        time.sleep(1)
                os._exit(0)
        os.write(report, f"{os.getpid()}\n".encode())
        while True:
            time.sleep(1)

    return body


def read_pids(fd: int, count: int) -> list[int]:
    data = b""
    while data.count(b"\n") < count:
        assert select.select([fd], [], [], 10)[0], "the tree did not report"
        data += os.read(fd, 4096)
    return [int(p) for p in data.split()]


@needs("cpu")
def test_kill_ends_a_tree_that_ignores_sigterm_and_double_forks(
    make: Callable[..., Cgroup],
) -> None:
    cgroup = make()
    r, w = os.pipe()
    try:
        starter = start(cgroup, stubborn_tree(w))
        pids = read_pids(r, 4)
    finally:
        os.close(r)
        os.close(w)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.2)
    assert not any(gone(pid) for pid in pids)  # SIGTERM alone does nothing
    assert set(pids) <= members(cgroup)
    cgroup.kill()
    assert os.WTERMSIG(wait(starter)) == signal.SIGKILL
    assert all(gone(pid) for pid in pids)
    assert members(cgroup) == set()


def sleep_forever() -> int:
    while True:
        time.sleep(1)


@needs("cpu")
def test_remove_kills_and_leaves_no_directory(make: Callable[..., Cgroup]) -> None:
    cgroup = make(pids=8)
    child = start(cgroup, sleep_forever)
    while not members(cgroup):
        time.sleep(0.01)
    cgroup.remove()
    assert os.WTERMSIG(wait(child)) == signal.SIGKILL
    assert not any(os.path.exists(os.path.dirname(p)) for p in cgroup.procs_paths)
    cgroup.remove()  # idempotent


@needs("cpu")
def test_cleanup_stale_removes_runs_of_dead_supervisors_only(make: Callable[..., Cgroup]) -> None:
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    wait(dead)
    stale = make(name=f"{dead}-0")
    ours = make()
    child = start(stale, sleep_forever)
    while not members(stale):
        time.sleep(0.01)
    cgroups.cleanup_stale()
    assert os.WTERMSIG(wait(child)) == signal.SIGKILL
    assert not any(os.path.exists(p) for p in stale.procs_paths)
    assert all(os.path.exists(p) for p in ours.procs_paths)  # our own pid is alive


def test_rmdir_does_not_follow_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real" / "run").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        base.rmdir(str(tmp_path / "link" / "run"), 0)
    assert (tmp_path / "real" / "run").is_dir()
    base.rmdir(str(tmp_path / "real" / "run"), 0)  # the same call works on a plain path
    assert not (tmp_path / "real" / "run").exists()

"""Each live sandbox's own uid (kernel/uids.py): the allocator under concurrency from two
processes, uids coming back when sandboxes end or their owner is SIGKILLed, a clear error when
the range is spent, and every kind of sandbox alive at once on a uid of its own."""

from __future__ import annotations

import contextlib
import glob
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from stockade import Policy, Sandbox, SetupError
from stockade.kernel import uids
from stockade.spawn import supervisor as spawn
from tests.conftest import needs_root

REPO = Path(__file__).parents[2]
# Leases 8 uids at once from 8 threads, says which, then holds them until stdin ends.
HOLDER = textwrap.dedent("""
    import sys, threading
    from stockade.kernel import uids
    first, last, directory = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    gate, held = threading.Barrier(8), []
    def take():
        gate.wait()
        held.append(uids.lease(first, last, directory=directory))
    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(" ".join(str(lease.id) for lease in held), flush=True)
    sys.stdin.read()
""")


def _holder(first: int, last: int, directory: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(first), str(last), str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


@contextlib.contextmanager
def holders(first: int, last: int, directory: Path, count: int) -> Iterator[list[set[int]]]:
    started = [_holder(first, last, directory) for _ in range(count)]
    try:
        yield [{int(word) for word in p.stdout.readline().split()} for p in started]  # type: ignore[union-attr]
    finally:
        for process in started:
            process.kill()
            process.wait()
            process.stdin.close()  # type: ignore[union-attr]
            process.stdout.close()  # type: ignore[union-attr]


def test_sixteen_callers_in_two_processes_never_share_a_uid(tmp_path: Path) -> None:
    first = 3_000_000
    with holders(first, first + 15, tmp_path, 2) as taken:
        assert [len(ids) for ids in taken] == [8, 8], taken
        both = taken[0] | taken[1]
        assert both == set(range(first, first + 16)), taken  # 16 callers, 16 uids: no reuse
        with pytest.raises(SetupError, match=r"every uid of process.uid_range 3000000-3000015"):
            uids.lease(first, first + 15, directory=str(tmp_path))


def test_a_uid_comes_back_when_released_and_when_its_holder_is_killed(tmp_path: Path) -> None:
    first = 3_000_100
    held = uids.lease(first, first, directory=str(tmp_path))
    with pytest.raises(SetupError, match="held by a live sandbox"):
        uids.lease(first, first, directory=str(tmp_path))
    held.release()
    uids.lease(first, first, directory=str(tmp_path)).release()
    with holders(first, first + 7, tmp_path, 1) as taken:
        assert taken == [set(range(first, first + 8))]
    # killed (SIGKILL) by holders(): the kernel dropped its locks
    again = [uids.lease(first, first + 7, directory=str(tmp_path)) for _ in range(8)]
    assert {lease.id for lease in again} == set(range(first, first + 8))
    for lease in again:
        lease.release()


def test_host_users_and_delegated_ranges_are_skipped(tmp_path: Path) -> None:
    taken = uids.host_ids()
    assert taken.holds(0) and not taken.holds(uids.DEFAULT_FIRST)
    with open("/etc/passwd") as passwd:
        some_user = int(passwd.readline().split(":")[2])
    with pytest.raises(SetupError, match="no host user or group owns"):
        uids.lease(some_user, some_user, directory=str(tmp_path))


def test_the_lock_directory_must_be_the_callers_alone(tmp_path: Path) -> None:
    shared = tmp_path / "locks"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(Exception, match="only its owner may write"):
        uids.lease(3_000_200, 3_000_201, directory=str(shared))


# ------------------------------------------------------------------ through sandboxes

ROOT = needs_root()


def _range(size: int) -> str:
    first = random.SystemRandom().randrange(4_000_000, 5_000_000)
    return f"{first}-{first + size - 1}"


@ROOT
def test_every_kind_of_sandbox_alive_at_once_has_its_own_uid() -> None:
    """A started run, a prepared run, a pooled sandbox and a session, all alive at once:
    different uids, each with the gid of the same number, all from the range."""
    policy = Policy.load("default").override(uid_range=_range(8), timeout=20)
    first, last = uids.parse_range(policy.process.uid_range)
    ask = "import os; print(os.getuid(), os.getgid())"
    seen: dict[str, tuple[int, ...]] = {}
    with (
        Sandbox(policy, pool=1) as box,
        box.session() as session,
        box.start(["python3", "-c", f"{ask}; input()"]) as running,
    ):
        with os.fdopen(os.dup(running.stdout)) as out:
            seen["started"] = tuple(map(int, out.readline().split()))
        seen["session"] = tuple(map(int, session.run(ask).stdout.split()))
        seen["pooled"] = tuple(map(int, box.run_code(ask).stdout.split()))
        box.run(["true"])  # from the second run on, the next one is prepared ahead
        seen["prepared"] = tuple(map(int, box.run(["python3", "-c", ask]).stdout.split()))
    assert all(len(ids) == 2 and ids[0] == ids[1] for ids in seen.values()), seen
    assert all(first <= ids[0] <= last for ids in seen.values()), seen
    assert len({ids[0] for ids in seen.values()}) == len(seen), f"a uid was shared: {seen}"


@ROOT
def test_a_spent_range_is_a_clear_error_and_comes_back() -> None:
    policy = Policy.load("default").override(uid_range=_range(1), timeout=20)
    with Sandbox(policy, prefork=False) as box:
        read, write = os.pipe()
        with box.start(["cat"], stdin=read) as running:
            os.close(read)
            assert running.started() is not None  # it holds the uid from here
            try:
                second = box.run(["true"])
            finally:
                os.close(write)
                first = running.wait()
        assert first.ok, first
        assert second.status == "setup_failed", second
        assert "every uid of process.uid_range" in (second.error or ""), second.error
        assert box.run(["true"]).ok  # it came back when the first ended


@ROOT
def test_a_fixed_uid_in_use_is_never_leased_and_a_host_users_is_named() -> None:
    """A policy's own process.uid is marked in use while its sandbox lives: a range holding
    only that uid is spent meanwhile. A fixed uid that is a host user's is said to be one."""
    uid_range = _range(1)
    fixed = Policy.load("default").override(uid=int(uid_range.split("-")[0]), timeout=20)
    leasing = Policy.load("default").override(uid_range=uid_range, timeout=20)
    with Sandbox(fixed, prefork=False) as box, Sandbox(leasing, prefork=False) as other:
        read, write = os.pipe()
        with box.start(["cat"], stdin=read) as running:
            os.close(read)
            assert running.started() is not None
            try:
                leased = other.run(["true"])
            finally:
                os.close(write)
                assert running.wait().ok
        assert leased.status == "setup_failed", leased
        assert other.run(["true"]).ok  # free again once the fixed-uid sandbox ended
    daemon = Sandbox(Policy.load("default").override(uid=1, timeout=20)).run(["true"])
    assert daemon.ok and any("a user's or group's of this host" in w for w in daemon.warnings)


@ROOT
def test_a_uid_comes_back_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL the supervisor that holds the range's only uid: the kernel drops its lock,
    its run dies with it, and the next sandbox gets the uid."""
    uid_range = _range(1)
    policy = tmp_path / "one-uid.toml"
    policy.write_text(f'[process]\nuid_range = "{uid_range}"\n')
    cli = subprocess.Popen(
        [sys.executable, "-m", "stockade", "run", "--policy", str(policy), "--", "sleep", "30"],
        cwd=REPO,
    )
    holder = None
    try:
        holder = _wait_for_lock_holder(int(uid_range.split("-")[0]))
        assert holder != cli.pid, "the supervisor, not the caller, holds the uid"
        os.kill(holder, signal.SIGKILL)
        cli.wait(timeout=30)
        again = Sandbox(Policy.load("default").override(uid_range=uid_range)).run(["true"])
        assert again.ok, again
    finally:
        cli.kill()
        cli.wait()
        # What a SIGKILLed supervisor leaves (its empty run dir, its cgroup) goes at the next
        # start of the spawn server; here, once its run is gone.
        for _ in range(100):
            spawn.cleanup_stale()
            if not glob.glob(os.path.join(tempfile.gettempdir(), f"stockade-{holder}-*")):
                break
            time.sleep(0.05)


def _wait_for_lock_holder(uid: int) -> int:
    path = f"{uids.lock_dir()}/{uid}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if any(f.path == path for f in process.open_files()):
                    return process.pid
        time.sleep(0.05)
    raise AssertionError(f"nobody locked {path}")

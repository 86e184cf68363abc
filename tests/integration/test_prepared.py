"""Prepared runs (`prefork`, on by default from a Sandbox's second run): each call still gets
a fresh sandbox of its own, with the same results, limits and cleanup as a run started from
nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from stockade import Policy, Sandbox
from stockade.spawn import supervisor as spawn
from tests.conftest import needs_root, our_run_dirs

pytestmark = needs_root()


@pytest.fixture
def prefork_box() -> Iterator[Sandbox]:
    with Sandbox(Policy.load("default").override(timeout=20), prefork=True) as box:
        yield box


def _prepare_next(box: Sandbox) -> str:
    """Preparing starts once the second run has ended: after two runs, the next one is a
    prepared one. Returns the run dir of the run being prepared, once it exists."""
    before = our_run_dirs()
    assert box.run(["true"]).ok and box.run(["true"]).ok
    for _ in range(500):
        if made := our_run_dirs() - before:
            (waiting,) = made
            return waiting
        time.sleep(0.01)
    raise AssertionError("no run was prepared")


CALLS = [
    (["sh", "-c", "cat; echo err >&2; exit 3"], b"in\n", {}, {}),
    (
        ["sh", "-c", 'echo "$GREETING"; cat data/x.txt'],
        b"",
        {"GREETING": "hi"},
        {"data/x.txt": "x"},
    ),
    (["python3", "-c", "import os; print(os.getuid() == os.getgid(), os.getcwd())"], b"", {}, {}),
    (["/nonexistent"], b"", {}, {}),
]


@pytest.mark.parametrize(("argv", "stdin", "env", "files"), CALLS)
def test_a_prepared_run_gives_what_a_fresh_one_gives(
    prefork_box: Sandbox, box: Sandbox, argv: list[str], stdin: bytes, env: dict, files: dict
) -> None:
    fresh = Sandbox(box.policy, prefork=False).run(argv, stdin=stdin, env=env, files=files)
    _prepare_next(prefork_box)
    prepared = prefork_box.run(argv, stdin=stdin, env=env, files=files)
    assert (prepared.status, prepared.exit_code, prepared.stdout, prepared.stderr) == (
        fresh.status,
        fresh.exit_code,
        fresh.stdout,
        fresh.stderr,
    )
    assert prepared.error == fresh.error


def test_a_call_runs_once(prefork_box: Sandbox) -> None:
    # The init may take its call and close its end before the caller's send returns; that
    # must not read as a failed call, which would run the program a second time, fresh, into
    # the same pipes. Spaced out, so that each call finds its run prepared.
    for _ in range(60):
        time.sleep(0.03)
        result = prefork_box.run(["sh", "-c", "echo once"])
        assert (result.ok, result.stdout) == (True, "once\n")


def test_each_call_gets_a_fresh_sandbox(prefork_box: Sandbox) -> None:
    leave = "touch /workspace/left /tmp/left /dev/shm/left; ls -A /workspace /tmp /dev/shm"
    first = prefork_box.run(["sh", "-c", leave])
    assert first.stdout.count("left") == 3
    for _ in range(3):
        later = prefork_box.run(["sh", "-c", "ls -A /workspace /tmp /dev/shm"])
        assert later.ok and "left" not in later.stdout


def test_a_prepared_run_waits_set_up_and_close_removes_it(prefork_box: Sandbox) -> None:
    before = our_run_dirs()
    assert Sandbox(prefork_box.policy).run(["true"]).ok
    time.sleep(0.3)
    assert our_run_dirs() == before  # used once: nothing prepared
    waiting = _prepare_next(prefork_box)  # the next run, set up and waiting for its call
    prefork_box.close()
    assert waiting not in our_run_dirs()
    assert prefork_box.run(["true"]).ok  # closed: runs go on, fresh, and nothing is prepared
    assert our_run_dirs() == before


def test_time_counts_from_the_call_not_from_the_preparation() -> None:
    with Sandbox(Policy.load("default").override(timeout=1), prefork=True) as box:
        _prepare_next(box)
        time.sleep(1.5)  # longer than the timeout, while the next run waits prepared
        result = box.run(["sleep", "0.3"])
        assert result.ok, result
        assert result.wall_time < 1
        assert box.run(["sleep", "5"]).status == "timeout"


def test_limits_hold_in_a_prepared_run(prefork_box: Sandbox) -> None:
    _prepare_next(prefork_box)
    pids = prefork_box.run(["sh", "-c", "for i in $(seq 100); do sleep 5 & done; wait"])
    assert pids.status != "ok"
    memory = prefork_box.run(["python3", "-c", "b = bytearray(512 << 20); print(len(b))"])
    assert memory.status == "memory_limit" and "536870912" not in memory.stdout


def test_the_init_is_confined_before_the_call_comes(prefork_box: Sandbox) -> None:
    _prepare_next(prefork_box)
    status = prefork_box.run(["grep", "-E", "^(Uid|NoNewPrivs|Seccomp|CapEff):", "/proc/1/status"])
    fields = dict(line.split(":\t", 1) for line in status.stdout.splitlines())
    uid, *others = map(int, fields["Uid"].split())
    assert others == [uid] * 3 and 0x7000_0000 <= uid < 0x7001_0000  # its own, from the range
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"
    assert int(fields["CapEff"], 16) == 0


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # reaped already
        return True


def test_a_killed_prepared_supervisor_means_a_fresh_run(prefork_box: Sandbox) -> None:
    waiting = _prepare_next(prefork_box)
    supervisor = int(os.path.basename(waiting).removeprefix("stockade-").split("-")[0])
    os.kill(supervisor, signal.SIGKILL)
    while not _dead(supervisor):
        time.sleep(0.01)
    assert prefork_box.run(["echo", "still"]).stdout == "still\n"
    prefork_box.close()
    for _ in range(100):  # the spawn server reaps it; then its leftovers can go
        spawn.cleanup_stale()
        if waiting not in our_run_dirs():
            break
        time.sleep(0.02)
    assert waiting not in our_run_dirs()


def test_threads_share_a_prefork_box(prefork_box: Sandbox) -> None:
    outputs: list[bytes] = []

    def worker(n: int) -> None:
        for i in range(5):
            outputs.append(prefork_box.run(["echo", f"{n}-{i}"]).stdout)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outputs) == sorted(f"{n}-{i}\n" for n in range(4) for i in range(5))


def test_a_forked_copy_of_the_caller_leaves_the_parents_prepared_run_alone(
    prefork_box: Sandbox,
) -> None:
    waiting = _prepare_next(prefork_box)
    child = os.fork()
    if child == 0:  # runs fresh, and its exit (finalizers included) ends nothing of ours
        code = 0 if prefork_box.run(["echo", "child"]).stdout == "child\n" else 1
        prefork_box.close()
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert waiting in our_run_dirs()  # still there, and still the parent's to use
    assert prefork_box.run(["echo", "parent"]).stdout == "parent\n"
    for _ in range(500):
        if waiting not in our_run_dirs():
            break
        time.sleep(0.01)
    assert waiting not in our_run_dirs()  # the parent's call used it up

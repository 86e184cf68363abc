"""Load: many runs one after another and many at once. Every Result must be right, and
afterwards nothing may be left (the autouse leak check of tests/conftest.py: processes, run
dirs, host mounts, cgroups, fds; here also network devices and namespaces), and the memory
of the long-lived processes (the caller, the spawn server) must not grow with the run count.

Sizes: 1,000 sequential runs and 200 runs 16 at a time by default (about a minute on two
cores). STOCKADE_LOAD=quick runs 200 and 64, for a fast local check.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from stockade import Policy, Sandbox, Status

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")

QUICK = os.environ.get("STOCKADE_LOAD") == "quick"
SEQUENTIAL = 200 if QUICK else 1000
CONCURRENT = 64 if QUICK else 200
AT_ONCE = 16
WARM_UP = 50
GROWTH_LIMIT = 16 << 20  # bytes of RSS the long-lived processes may gain over the whole test


def _network_state() -> dict[str, list[str]]:
    """The host's network devices and named network namespaces."""
    state = {"devices": sorted(os.listdir("/sys/class/net"))}
    state["netns"] = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    return state


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def _check(index: int, result: object) -> None:
    assert result.status is Status.OK, (index, result)  # type: ignore[attr-defined]
    assert result.stdout == f"{index}\n", (index, result)  # type: ignore[attr-defined]
    assert result.stderr == "" and result.exit_code == 0, (index, result)  # type: ignore[attr-defined]


def _report(label: str, times: list[float]) -> None:
    times = sorted(times)
    p99 = times[int(len(times) * 0.99) - 1]
    print(
        f"\n{label}: {len(times)} runs, median {statistics.median(times) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms"
    )


def test_sequential_runs() -> None:
    box = Sandbox(Policy.load("default"))
    network = _network_state()
    me = os.getpid()
    for index in range(WARM_UP):
        _check(index, box.run(["echo", str(index)]))
    rss_before = _rss(me)
    fds_before = len(os.listdir("/proc/self/fd"))
    times = []
    for index in range(SEQUENTIAL):
        started = time.monotonic()
        result = box.run(["echo", str(index)])
        times.append(time.monotonic() - started)
        _check(index, result)
    _report("sequential", times)
    growth = _rss(me) - rss_before
    assert growth < GROWTH_LIMIT, f"the caller grew by {growth >> 10} KiB over {SEQUENTIAL} runs"
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert _network_state() == network


def test_concurrent_runs() -> None:
    from stockade.spawn import server as forkserver

    box = Sandbox(Policy.load("default"))
    network = _network_state()
    with ThreadPoolExecutor(AT_ONCE) as pool:
        # With threads about, runs go through the spawn server: warm it up, then measure it.
        for index, result in enumerate(pool.map(lambda i: box.run(["echo", str(i)]), range(32))):
            _check(index, result)
        server = forkserver._server._process
        assert server is not None and server.poll() is None
        server_rss = _rss(server.pid)
        caller_rss = _rss(os.getpid())

        def one(index: int) -> tuple[int, object, float]:
            started = time.monotonic()
            result = box.run(["echo", str(index)])
            return index, result, time.monotonic() - started

        started = time.monotonic()
        outcomes = list(pool.map(one, range(CONCURRENT)))
        elapsed = time.monotonic() - started
    for index, result, _ in outcomes:
        _check(index, result)
    _report(f"{AT_ONCE} at a time", [t for _, _, t in outcomes])
    print(f"{CONCURRENT} runs in {elapsed:.1f} s: {CONCURRENT / elapsed:.1f} runs/s")
    assert forkserver._server._process is server, "the spawn server was restarted"
    for label, pid, before in (("spawn server", server.pid, server_rss),
                               ("caller", os.getpid(), caller_rss)):  # fmt: skip
        growth = _rss(pid) - before
        assert growth < GROWTH_LIMIT, f"the {label} grew by {growth >> 10} KiB"
    assert _network_state() == network


def test_mixed_outcomes_under_load() -> None:
    """Runs that end every which way, 16 at a time: each Result says what happened to it,
    and no run's outcome leaks into another's."""
    box = Sandbox(Policy.load("default").override(timeout=2, memory="64M"))
    programs = {
        "ok": (["sh", "-c", "echo ok"], Status.OK),
        "exit": (["sh", "-c", "echo exit >&2; exit 7"], Status.NONZERO_EXIT),
        "timeout": (["sleep", "30"], Status.TIMEOUT),
        "memory": (["python3", "-c", "x = bytearray(256 << 20)"], Status.MEMORY_LIMIT),
        "signal": (["sh", "-c", "kill -SEGV $$"], Status.SIGNALED),
        "missing": (["no-such-command"], Status.NONZERO_EXIT),
    }
    work = [name for name in programs for _ in range(8)]

    def one(name: str) -> tuple[str, object]:
        return name, box.run(programs[name][0])

    with ThreadPoolExecutor(AT_ONCE) as pool:
        outcomes = list(pool.map(one, work))
    for name, result in outcomes:
        assert result.status is programs[name][1], (name, result)  # type: ignore[attr-defined]
        if name == "exit":
            assert result.exit_code == 7 and result.stderr == "exit\n"  # type: ignore[attr-defined]
        if name == "ok":
            assert result.stdout == "ok\n"  # type: ignore[attr-defined]
        if name == "missing":
            assert result.exit_code == 127  # type: ignore[attr-defined]

"""Shared fixtures: a sandbox on the default policy, and a leak check around every test that
runs real sandboxes (fds, mounts, run dirs, cgroups, processes): nothing may be left behind."""

from __future__ import annotations

import gc
import glob
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from stockade import Policy, Sandbox

RUN_DIRS = os.path.join(tempfile.gettempdir(), "stockade-*")


def needs_root() -> pytest.MarkDecorator:
    return pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(Policy.load("default").override(timeout=20)) as sandbox:
        yield sandbox


def _stockade_cgroups() -> set[str]:
    found = set()
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(root) == "stockade":
            found.update(os.path.join(root, d) for d in dirs)
            dirs.clear()
    return found


def _our_mounts() -> list[str]:
    """Host mounts a run could have left: anything under a run dir or naming stockade."""
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    return [point for point in points if "stockade" in point]


def _not_someone_elses(path: str, ours: set[int]) -> bool:
    """Run dirs and cgroups are named after their supervisor's pid: skip those of live
    supervisors outside this test process (another test session on the machine)."""
    pid = os.path.basename(path).removeprefix("stockade-").split("-", 1)[0]
    return not pid.isdigit() or int(pid) in ours or not psutil.pid_exists(int(pid))


def our_run_dirs() -> set[str]:
    """The run dirs on the machine but those of another test session's live supervisors."""
    me = psutil.Process()
    ours = {p.pid for p in me.children(recursive=True)} | {me.pid}
    return {p for p in glob.glob(RUN_DIRS) if _not_someone_elses(p, ours)}


def _snapshot() -> dict[str, object]:
    me = psutil.Process()
    children = {p.pid for p in me.children(recursive=True)}
    ours = children | {me.pid}
    return {
        "fds": set(os.listdir("/proc/self/fd")),
        "mounts": _our_mounts(),
        "run dirs": our_run_dirs(),
        "cgroups": {p for p in _stockade_cgroups() if _not_someone_elses(p, ours)},
        "child processes": children,
    }


def _settled_snapshot() -> dict[str, object]:
    """The snapshot, once no unreachable object keeps a run. An object dropped in a reference
    cycle (an agent holding a Sandbox with a prepared run, say) is freed only by the
    collector, whose finalizers then end that run: at some arbitrary point inside a later
    test, unless collected here. Only when something besides the spawn server is there (a
    run, or one being prepared): a collection takes ~60 ms."""
    found = _snapshot()
    if found["run dirs"] or found["cgroups"] or len(psutil.Process().children(True)) > 1:
        gc.collect()
        found = _snapshot()
    return found


@pytest.fixture
def span_exporter() -> Any:
    """OpenTelemetry's in-memory exporter: what `tracer_provider` exported, finished."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: Any) -> Iterator[Any]:
    """An OpenTelemetry SDK provider whose spans go to `span_exporter` as each ends."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture(scope="session", autouse=True)
def spawn_server() -> None:
    """Start the spawn server up front: its socket and process are meant to stay."""
    from stockade.spawn import server as forkserver

    forkserver.start_server()


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    kind = request.node.path.relative_to(Path(__file__).parent).parts[0]
    checked = ("integration", "security", "load", "rootless")
    if kind not in checked or request.node.get_closest_marker("no_leak_check"):
        yield
        return
    before = _settled_snapshot()
    yield
    after = _settled_snapshot()
    for _ in range(50):  # a killed run's cgroup may take a moment to empty
        if after == before:
            break
        time.sleep(0.05)
        after = _snapshot()
    assert after == before, "a run left something behind"

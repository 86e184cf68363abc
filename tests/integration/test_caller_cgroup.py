"""Runs nest under the caller's own cgroup, so the limits the caller is under (a systemd
service's MemoryMax, a CI job's, a container's) hold for the sandboxes it starts; and what
root changes in the hierarchy for them is only what they need, undone after the last run.

The caller here is `sandbox run`, started in a cgroup of the test's own (v1: in the memory
hierarchy, under the test's cgroup; v2: under the root cgroup). The v2-only tests skip on a
v1 machine and run in the cgroup v2 VM job (.ci/v2vm-job).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade.kernel.cgroups import control as cgroups
from stockade.kernel.cgroups.layout import LEAF, PARENT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroup directories)")

SUPPORT = cgroups.detect()
needs_memory = pytest.mark.skipif(
    not SUPPORT.controllers["memory"],
    reason=f"no cgroup memory controller: {SUPPORT.reasons.get('memory')}",
)
needs_v2 = pytest.mark.skipif(
    SUPPORT.version != 2,
    reason=f"cgroup v2 only (this machine: v{SUPPORT.version}); runs in the v2 VM job",
)


def _subtree(cgroup: Path) -> str:
    return (cgroup / "cgroup.subtree_control").read_text().strip()


def _enable(cgroup: Path, controller: str) -> bool:
    """Turn `controller` on below `cgroup`; whether it was off (so the test turns it off)."""
    if controller in _subtree(cgroup).split():
        return False
    (cgroup / "cgroup.subtree_control").write_text(f"+{controller}")
    return True


def _remove(cgroup: Path) -> None:
    """rmdir `cgroup` and the leaf in it, once their processes (exited) are gone."""
    for path in (cgroup / LEAF, cgroup):
        deadline = time.monotonic() + 5
        while path.exists():
            try:
                path.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@pytest.fixture
def caller() -> Iterator[Path]:
    """A cgroup of our own for the caller: v1, beside the run cgroups' parent in the memory
    hierarchy; v2, directly under the root cgroup (which may give controllers while it holds
    processes), memory on for it only while the test lasts."""
    name = f"stockade-test-caller-{os.getpid()}"
    turned_on = False
    if SUPPORT.version == 2:
        top = Path(SUPPORT.mount)
        turned_on = _enable(top, "memory")
        cgroup = top / name
    else:
        cgroup = Path(SUPPORT.paths["memory"]).parent / name
    cgroup.mkdir()
    try:
        yield cgroup
    finally:
        _remove(cgroup)
        if turned_on:
            (top / "cgroup.subtree_control").write_text("-memory")


def run_in(cgroup: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`sandbox run --json ARGS` with the command itself in `cgroup`."""
    command = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
    sandbox = (sys.executable, "-m", "stockade", "run", "--json", *args)
    return subprocess.run(
        ["sh", "-c", command, str(cgroup), *sandbox], capture_output=True, text=True, timeout=350
    )


ALLOCATE_150M = ("--", "python3", "-c", "b = bytearray(150 << 20); print(len(b))")


@needs_memory
@pytest.mark.timeout(400)
def test_the_callers_memory_limit_holds_for_its_runs(caller: Path) -> None:
    limit = "memory.max" if SUPPORT.version == 2 else "memory.limit_in_bytes"
    # Room for the `sandbox` command itself (~30 MiB), so that when the caller's limit is
    # hit, the run's allocation is the largest process below it: the OOM killer's pick.
    (caller / limit).write_text(str(100 << 20))
    # A long timeout: under emulation (the v2 VM job) reclaim is slow before the OOM kill.
    done = run_in(caller, "--memory", "300M", "--timeout", "200", *ALLOCATE_150M)
    result = json.loads(done.stdout)
    assert result["status"] == "memory_limit", (done.stderr, result)


@needs_memory
@pytest.mark.timeout(400)
def test_without_a_caller_limit_the_same_run_is_ok(caller: Path) -> None:
    done = run_in(caller, "--memory", "300M", "--timeout", "200", *ALLOCATE_150M)
    result = json.loads(done.stdout)
    assert result["status"] == "ok" and result["stdout"] == f"{150 << 20}\n", done.stderr


@needs_v2
def test_v2_changes_only_what_runs_need_and_undoes_it(caller: Path) -> None:
    top = Path(SUPPORT.mount)
    before = _subtree(top)
    done = run_in(caller, "--memory", "64M", "--", "cat", "/proc/self/cgroup")
    result = json.loads(done.stdout)
    assert result["status"] == "ok", (done.stderr, result)
    # The run was in the caller's cgroup (seen as the root of its cgroup namespace), with the
    # caller moved into the leaf beside `stockade` so that the caller could give controllers.
    assert result["stdout"] == "0::/\n"
    assert (caller / LEAF).is_dir()
    # Afterwards: no `stockade` left, nothing turned on in the caller's cgroup or above.
    assert not (caller / PARENT).exists()
    assert _subtree(caller) == ""
    assert _subtree(top) == before

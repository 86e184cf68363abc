"""`Sandbox.map` / `amap`: many jobs, each result exactly once under its id, in completion
order, whatever each job did; bad jobs are their own results; leaving early kills the rest."""

from __future__ import annotations

import asyncio
import time

import pytest

from stockade import Policy, Sandbox, Status
from stockade.batch.jobs import Job

pytestmark = pytest.mark.skipif(
    __import__("os").geteuid() != 0, reason="needs root (namespaces, mounts)"
)


def mixed(count: int) -> tuple[list[object], dict[object, tuple[Status, int | None, str]]]:
    """`count` jobs of every outcome and what each must give: (status, exit code, stdout)."""
    jobs: list[object] = []
    expected: dict[object, tuple[Status, int | None, str]] = {}
    for i in range(count):
        if i % 100 == 0:  # timeout, at a short limit of its own
            jobs.append({"id": f"t{i}", "code": "while True: pass", "timeout": 0.2})
            expected[f"t{i}"] = (Status.TIMEOUT, None, "")
        elif i % 100 == 50:  # memory: a limit of its own, so a fresh sandbox
            code = "print('start', flush=True); b = bytearray(200 << 20); print('end')"
            jobs.append(Job(id=f"m{i}", code=code, memory="48M"))
            expected[f"m{i}"] = (Status.MEMORY_LIMIT, None, "start\n")
        elif i % 3 == 1:  # failing, with an exit code of its own
            jobs.append({"id": i, "code": f"import sys; print({i}); sys.exit({i % 7 + 1})"})
            expected[i] = (Status.NONZERO_EXIT, i % 7 + 1, f"{i}\n")
        elif i % 10 == 2:  # a command, with stdin
            jobs.append({"id": f"a{i}", "argv": ["sh", "-c", "cat; echo"], "stdin": f"{i}"})
            expected[f"a{i}"] = (Status.OK, 0, f"{i}\n")
        else:  # ok, reading a file of its own
            jobs.append({"id": i, "code": "print(open('n').read())", "files": {"n": str(i)}})
            expected[i] = (Status.OK, 0, f"{i}\n")
    return jobs, expected


def test_map_of_2000_mixed_jobs_gives_each_its_own_result_once() -> None:
    jobs, expected = mixed(2000)
    policy = Policy.load("default").override(timeout=10)
    with Sandbox(policy, pool=2) as box:
        got = {}
        for done in box.map(jobs, progress=False):
            assert done.id not in got, f"{done.id!r} reported twice"
            got[done.id] = done.result
    assert set(got) == set(expected)
    wrong = {
        key: (r.status, r.exit_code, r.stdout, r.error)
        for key, r in got.items()
        if (r.status, r.exit_code, r.stdout) != expected[key]
    }
    assert not wrong, list(wrong.items())[:5]
    assert {r.status for r in got.values()} == {
        Status.OK,
        Status.NONZERO_EXIT,
        Status.TIMEOUT,
        Status.MEMORY_LIMIT,
    }


def test_results_come_in_completion_order() -> None:
    jobs = [{"id": "slow", "code": "import time; time.sleep(1.5)"}] + [
        {"id": n, "code": f"print({n})"} for n in range(5)
    ]
    with Sandbox(pool=2) as box:
        order = [done.id for done in box.map(jobs, concurrency=2, progress=False)]
    assert order[-1] == "slow" and sorted(order[:-1]) == list(range(5))


def test_bad_jobs_are_their_own_setup_failed_results() -> None:
    jobs = [
        "print('plain string: its index is its id')",
        {"id": "no-code"},
        {"id": "both", "code": "1", "argv": ["true"]},
        {"id": "limit", "code": "1", "timeout": "soon"},
        {"id": "lang", "code": "1", "language": "cobol"},
        {"id": "field", "code": "1", "colour": "red"},
        {"code": "1"},
        42,
    ]
    with Sandbox() as box:
        got = {done.id: done.result for done in box.map(jobs, progress=False)}
    assert got[0].status is Status.OK and got[0].stdout.startswith("plain string")
    errors = {key: r.error for key, r in got.items() if key != 0}
    assert all(got[key].status is Status.SETUP_FAILED for key in errors)
    assert errors["no-code"].startswith("code: a job has either code or argv")
    assert errors["both"].startswith("code: a job has either code or argv")
    assert errors["limit"].startswith("timeout: expected a duration")
    assert errors["lang"].startswith("language: unknown language 'cobol'")
    assert errors["field"].startswith("colour: unknown field")
    assert errors[None].startswith("job: expected a Job")  # 42; the one without an id too
    assert len(got) == 7  # {"code": "1"} and 42 both have no id: one key, None


def test_a_bad_concurrency_is_refused() -> None:
    with Sandbox(prefork=False) as box, pytest.raises(ValueError, match="concurrency"):
        next(box.map(["1"], concurrency=0))


def test_leaving_the_loop_early_kills_the_runs_in_progress() -> None:
    jobs = [{"id": n, "code": "import time; time.sleep(30)"} for n in range(4)]
    jobs.insert(0, {"id": "quick", "code": "print(1)"})
    with Sandbox(pool=2) as box:
        started = time.monotonic()
        results = box.map(jobs, concurrency=3, progress=False)
        first = next(results)
        results.close()  # as a `break` does
        assert time.monotonic() - started < 20
    assert first.id == "quick" and first.result.ok


def test_amap_gives_each_result_once_and_cancelling_kills() -> None:
    async def collect() -> dict[object, Status]:
        with Sandbox(pool=2) as box:
            got = {}
            async for done in box.amap([f"print({n})" for n in range(20)], concurrency=4):
                got[done.id] = done.result.status
            slow = box.amap(["import time; time.sleep(30)"] * 2, progress=False)
            waiting = asyncio.ensure_future(slow.__anext__())
            await asyncio.sleep(0.5)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await slow.aclose()
            return got

    started = time.monotonic()
    got = asyncio.run(collect())
    assert got == dict.fromkeys(range(20), Status.OK)
    assert time.monotonic() - started < 20


def test_the_batch_benchmark_runs_and_reports_its_ratios() -> None:
    # A few jobs: its shape, not its speed (bench/ is where speed is measured).
    import json
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench" / "batch_bench.py"
    options = ["--jobs", "20", "--pool", "2", "--rounds", "1", "--no-ray", "--json"]
    done = subprocess.run(
        [sys.executable, str(bench), *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: a target missed, at 20 jobs
    report = json.loads(done.stdout)
    rates = report["figures"]["runs_per_second"]
    assert set(rates) == {"loop", "map", "thread_pool"} and all(v > 0 for v in rates.values())
    ratio = report["ratios"]["map >= 1.5x a simple loop over run_code"]
    assert ratio == rates["map"] / rates["loop"]

"""Host callbacks: a tool call's round trip against a pooled `print(1)`, as ratios in one run.

    python bench/callbacks_bench.py [--runs 200] [--calls 2000] [--json]

- baseline: the median wall time of a pooled `print(1)` (`Sandbox(policy, pool=1).run_code`),
  measured by the caller.
- round trip: a trivial sync tool (`ping() -> "pong"`) called from the sandboxed code, timed
  there with perf_counter over batches of 100 calls; the median batch's mean per call, in a
  pooled run and in a session, and for an async tool in a pooled run. Each is its arguments'
  JSON out, the host's lookup, validation (pydantic) and call, and the JSON back.
  Target: the sync pooled round trip <= 0.1x the baseline.

Run it as root (or where `sandbox doctor` passes) from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from stockade import Policy, Result, Sandbox, Status

BATCH = 100
TIMED = """
import statistics, time
batches = []
for _ in range({batches}):
    started = time.perf_counter()
    for _ in range({batch}):
        {tool}()
    batches.append((time.perf_counter() - started) / {batch})
print(statistics.median(batches))
"""


def ping() -> str:
    return "pong"


async def aping() -> str:
    return "pong"


def _seconds(result: Result) -> float:
    assert result.status is Status.OK, (result.stderr, result.error)
    return float(result.stdout)


def measure(runs: int, calls: int) -> dict[str, float]:
    policy = Policy.load("default").override(timeout=120, cpu_time=120)
    code = {name: TIMED.format(batches=max(calls // BATCH, 1), batch=BATCH, tool=name)
            for name in ("ping", "aping")}  # fmt: skip
    with Sandbox(policy, pool=1) as box:
        for _ in range(20):  # warm: the pool's sandbox, the host's first validation
            box.run_code("print(1)", tools=[ping, aping])
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            result = box.run_code("print(1)")
            times.append(time.perf_counter() - started)
            assert result.status is Status.OK and result.stdout == "1\n", result
        pooled_print = statistics.median(times)
        sync_pooled = _seconds(box.run_code(code["ping"], tools=[ping]))
        async_pooled = _seconds(box.run_code(code["aping"], tools=[aping]))
        with box.session(tools=[ping]) as session:
            sync_session = _seconds(session.run(code["ping"]))
    return {
        "pooled_print_s": pooled_print,
        "round_trip_pooled_s": sync_pooled,
        "round_trip_async_s": async_pooled,
        "round_trip_session_s": sync_session,
        "ratio": sync_pooled / pooled_print,
        "ratio_async": async_pooled / pooled_print,
        "ratio_session": sync_session / pooled_print,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="pooled print(1) runs (median)")
    parser.add_argument("--calls", type=int, default=2000, help="tool calls per measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.calls < BATCH:
        parser.error(f"--runs must be >= 1 and --calls >= {BATCH}")
    numbers = measure(args.runs, args.calls)
    if args.json:
        print(json.dumps(numbers))
        return 0
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"pooled print(1):             {numbers['pooled_print_s'] * 1e3:8.3f} ms (baseline)")
    for label, key, ratio in (
        ("tool round trip (pooled)", "round_trip_pooled_s", "ratio"),
        ("async tool round trip", "round_trip_async_s", "ratio_async"),
        ("tool round trip (session)", "round_trip_session_s", "ratio_session"),
    ):
        print(f"{label + ':':28} {numbers[key] * 1e6:8.1f} us  {numbers[ratio]:.3f}x")
    verdict = "meets" if numbers["ratio"] <= 0.1 else "MISSES"
    print(f"target: round trip <= 0.1x a pooled print(1): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Batches: `Sandbox.map` against a simple loop over `run_code`, and `stockade.ray` on a
one-node local Ray cluster against the local pool, as ratios measured in one run.

    python bench/batch_bench.py [--jobs 1000] [--pool 4] [--rounds 3] [--no-ray] [--json]

- map: `box.map(jobs)` of `--jobs` `print(1)` jobs (default concurrency: the cores) against
  a simple loop, `for code in jobs: box.run_code(code)`, on the same pool. Also shown: a
  thread pool of as many threads over `run_code`, what one writes by hand. Target: map >=
  1.5x the loop.
- ray: `RaySandbox(policy, pool_per_node=--pool).map(jobs)` on a local one-node cluster (this
  machine's cores) against `Sandbox(policy, pool=--pool).map(jobs)`. Target: >= 0.8x. The
  per-job overhead through Ray is the difference of the two per-job times, and a single
  `run_code`'s median latency each way.

Rounds alternate (loop, map, thread pool; then local, Ray) and the best of each is kept,
so that a burst of load elsewhere does not decide a ratio. Run as root from the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from stockade import Policy, Sandbox, Status


def rate(run: Callable[[list[str]], int], jobs: list[str]) -> float:
    started = time.perf_counter()
    ok = run(jobs)
    elapsed = time.perf_counter() - started
    assert ok == len(jobs), f"{len(jobs) - ok} jobs failed"
    return len(jobs) / elapsed


def loop(box: Sandbox) -> Callable[[list[str]], int]:
    return lambda jobs: sum(box.run_code(code).status is Status.OK for code in jobs)


def mapped(box: object) -> Callable[[list[str]], int]:
    return lambda jobs: sum(done.result.ok for done in box.map(jobs, progress=False))  # type: ignore[attr-defined]


def thread_pool(box: Sandbox, threads: int) -> Callable[[list[str]], int]:
    def run(jobs: list[str]) -> int:
        with ThreadPoolExecutor(threads) as pool:
            return sum(r.status is Status.OK for r in pool.map(box.run_code, jobs))

    return run


def latency(run_code: Callable[[str], object], count: int = 100) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        run_code("print(1)")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_map(policy: Policy, jobs: list[str], pool: int, rounds: int) -> dict[str, float]:
    cores = len(os.sched_getaffinity(0))
    with Sandbox(policy, pool=pool) as box:
        mapped(box)(jobs[: pool * 10])  # every pooled sandbox started and used
        best = {"loop": 0.0, "map": 0.0, "thread_pool": 0.0}
        for _ in range(rounds):
            best["loop"] = max(best["loop"], rate(loop(box), jobs))
            best["map"] = max(best["map"], rate(mapped(box), jobs))
            best["thread_pool"] = max(best["thread_pool"], rate(thread_pool(box, cores), jobs))
    return best


def bench_ray(policy: Policy, jobs: list[str], pool: int, rounds: int) -> dict[str, float]:
    import ray

    from stockade.ray import RaySandbox

    ray.init(num_cpus=len(os.sched_getaffinity(0)), logging_level="warning", log_to_driver=False)
    try:
        with Sandbox(policy, pool=pool) as box, RaySandbox(policy, pool_per_node=pool) as remote:
            for runner in (box, remote):
                mapped(runner)(jobs[: pool * 10])
            best = {"local_map": 0.0, "ray_map": 0.0}
            for _ in range(rounds):
                best["local_map"] = max(best["local_map"], rate(mapped(box), jobs))
                best["ray_map"] = max(best["ray_map"], rate(mapped(remote), jobs))
            best["local_run_code_ms"] = latency(box.run_code) * 1e3
            best["ray_run_code_ms"] = latency(remote.run_code) * 1e3
    finally:
        ray.shutdown()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="print(1) jobs per figure")
    parser.add_argument("--pool", type=int, default=4, help="pooled sandboxes (per node)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds; best kept")
    parser.add_argument("--no-ray", action="store_true", help="the map figures only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    policy = Policy.load("default")
    jobs = ["print(1)"] * args.jobs
    figures: dict[str, object] = {
        "cores": len(os.sched_getaffinity(0)),
        "load_average_before": os.getloadavg()[0],
        "jobs": args.jobs,
        "pool": args.pool,
        "runs_per_second": bench_map(policy, jobs, args.pool, args.rounds),
    }
    rates = figures["runs_per_second"]
    assert isinstance(rates, dict)
    targets = {"map >= 1.5x a simple loop over run_code": rates["map"] / rates["loop"]}
    if not args.no_ray:
        ray_figures = bench_ray(policy, jobs, args.pool, args.rounds)
        rates.update(ray_figures)
        overhead = 1e3 / ray_figures["ray_map"] - 1e3 / ray_figures["local_map"]
        figures["ray_overhead_ms_per_job"] = overhead
        targets["ray one node >= 0.8x the local pool"] = (
            ray_figures["ray_map"] / ray_figures["local_map"]
        )
    figures["load_average_after"] = os.getloadavg()[0]
    goals = {
        "map >= 1.5x a simple loop over run_code": 1.5,
        "ray one node >= 0.8x the local pool": 0.8,
    }
    met = {name: ratio >= goals[name] for name, ratio in targets.items()}
    if args.json:
        print(json.dumps({"figures": figures, "ratios": targets, "met": met}, indent=2))
    else:
        print(
            f"machine: {figures['cores']} cores, load {figures['load_average_before']:.2f} "
            f"-> {figures['load_average_after']:.2f}; {args.jobs} print(1) jobs, pool {args.pool}"
        )
        for name, value in rates.items():
            unit = "ms" if name.endswith("_ms") else "jobs/s"
            print(f"  {name:<20} {value:9.1f} {unit}")
        if "ray_overhead_ms_per_job" in figures:
            print(f"  ray overhead per job {figures['ray_overhead_ms_per_job']:9.3f} ms")
        for name, ratio in targets.items():
            print(f"{'MET ' if met[name] else 'MISS'} {name}: {ratio:.2f}x")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

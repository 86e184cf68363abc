"""Warm pools and sessions against no sandbox at all, as ratios measured in one run.

    python bench/pool_bench.py [--runs 300] [--pool 4] [--seconds 3] [--json]

- latency: the median wall time of a pooled `print(1)` (`Sandbox(policy, pool=N).run_code`),
  against a bare, unsandboxed `python3 -c 'print(1)'` started as a process (posix_spawn, output
  read from a pipe): this interpreter's real binary (not a pyenv shim), and, when we run in a
  virtualenv, its python too (the same binary, without the base installation's
  site-packages); the faster of the two is the baseline. Target: <= 0.2x.
- throughput: pooled `print(1)` runs per second from 1, 2 and 8 threads. Target: >= 200/s on
  2 cores (the machine's core count is printed beside it).
- session: the median of `s.run("pass")` in a session, against an in-process `exec("pass")`
  and against the bare start. Target: under 1 ms.

Run it as root (or where `sandbox doctor` passes) from the repository root.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable

from stockade import Policy, Sandbox, Status


def real_python() -> str:
    """This interpreter's own binary under its installation (a venv's or pyenv's python3 is a
    link or a shim script in front of it)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidate = os.path.join(os.path.realpath(sys.base_prefix), "bin", version)
    return candidate if os.path.exists(candidate) else os.path.realpath(sys.executable)


def bare_start(python: str) -> float:
    read, write = os.pipe()
    started = time.perf_counter()
    pid = os.posix_spawn(
        python, [python, "-c", "print(1)"], {}, file_actions=[(os.POSIX_SPAWN_DUP2, write, 1)]
    )
    os.close(write)
    output = b""
    while chunk := os.read(read, 4096):
        output += chunk
    os.waitpid(pid, 0)
    elapsed = time.perf_counter() - started
    os.close(read)
    assert output == b"1\n", output
    return elapsed


def timed(action: Callable[[], object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def throughput(box: Sandbox, threads: int, seconds: float) -> float:
    done = [0] * threads
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        while time.monotonic() < stop:
            result = box.run_code("print(1)")
            assert result.status is Status.OK and result.stdout == "1\n", result
            done[index] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sum(done) / (time.monotonic() - started)


def exec_pass(count: int) -> float:
    """Seconds per in-process `exec("pass")` (compiling included, as a session call does)."""
    namespace: dict[str, object] = {}
    started = time.perf_counter()
    for _ in range(count):
        exec("pass", namespace)
    return (time.perf_counter() - started) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="samples per latency figure")
    parser.add_argument("--pool", type=int, default=4, help="pooled sandboxes")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput figure")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    python = real_python()
    policy = Policy.load("default")
    starts = {}
    for candidate in dict.fromkeys((python, sys.executable)):
        starts[candidate] = statistics.median(
            timed(functools.partial(bare_start, candidate), args.runs)
        )
    bare = min(starts.values())

    with Sandbox(policy, pool=args.pool) as box:
        for _ in range(args.pool * 3):  # every pooled sandbox started and used once
            assert box.run_code("print(1)").status is Status.OK
        pooled = statistics.median(timed(lambda: box.run_code("print(1)"), args.runs))
        rates = {n: throughput(box, n, args.seconds) for n in (1, 2, 8)}

    with Sandbox(policy).session() as session:
        session.run("pass")
        call = statistics.median(timed(lambda: session.run("pass"), args.runs * 3))
    in_process = exec_pass(20_000)

    figures = {
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "python": python,
        "bare_starts_ms": {path: value * 1e3 for path, value in starts.items()},
        "bare_start_ms": bare * 1e3,
        "pooled_print_ms": pooled * 1e3,
        "pooled_vs_bare": pooled / bare,
        "runs_per_second": {str(n): rate for n, rate in rates.items()},
        "session_pass_ms": call * 1e3,
        "exec_pass_us": in_process * 1e6,
        "session_vs_exec": call / in_process,
        "session_vs_bare": call / bare,
    }
    targets = {
        "pooled print(1) <= 0.2x bare start": pooled / bare <= 0.2,
        "throughput >= 200 runs/s": max(rates.values()) >= 200,
        "session call < 1 ms": call < 1e-3,
    }
    if args.json:
        print(json.dumps({"figures": figures, "targets": targets}, indent=2))
    else:
        print(f"machine: {figures['cores']} cores, load {figures['load_average']:.2f}")
        for path, value in starts.items():
            print(f"bare python3 -c 'print(1)'    {value * 1e3:8.2f} ms   {path}")
        print(
            f"pooled print(1), median       {pooled * 1e3:8.2f} ms   "
            f"{pooled / bare:.3f}x bare ({bare / pooled:.1f} times faster)"
        )
        for threads, rate in rates.items():
            print(f"pooled throughput, {threads} thread(s)  {rate:8.1f} runs/s  (pool={args.pool})")
        print(
            f"session s.run('pass'), median {call * 1e3:8.3f} ms   "
            f"{call / in_process:.0f}x in-process exec('pass') ({in_process * 1e6:.2f} us), "
            f"{call / bare:.4f}x bare start"
        )
        for target, met in targets.items():
            print(f"{'MET ' if met else 'MISS'} {target}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

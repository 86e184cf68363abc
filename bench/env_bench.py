"""Python environments in the sandbox, as ratios measured in one run.

    python bench/env_bench.py [--runs 200] [--json]

- build: the seconds `[python] requirements` take to build on first use, into an empty cache
  of this benchmark's own, for a one-module package (six) and for numpy; pip's own download
  cache is left as it is (warm after the first time), so this is install time, not download.
- preload: in one pool whose zygote preloaded numpy from an environment, the median of a
  pooled `import numpy` against a pooled `print(1)`, alternated run by run. Target: <= 1.2x.
- fresh: the median of a fresh run of `python3 -c 'import sys'` with an environment shown
  (its overlay and PYTHONPATH) against the same run without, alternated. Target: the ratio
  of the medians <= 1.05x (the two differ by one overlay mount and one sys.path entry). The
  median of the pair-by-pair ratios is printed too: on a loaded machine it wanders more.

Run it as root (or where `sandbox doctor` passes) from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stockade import Policy, Sandbox, Status


def with_packages(*requirements: str) -> Policy:
    return Policy.from_dict({"python": {"requirements": list(requirements)}})


def build_seconds(requirements: tuple[str, ...]) -> float:
    """A first use, into an empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ["STOCKADE_CACHE_DIR"] = cache
        try:
            started = time.perf_counter()
            Sandbox(with_packages(*requirements), prefork=False)
            return time.perf_counter() - started
        finally:
            del os.environ["STOCKADE_CACHE_DIR"]


def alternated(
    first: Callable[[], object], second: Callable[[], object], runs: int
) -> tuple[float, float, float]:
    """Medians of each, and the median of the per-pair ratios first/second."""
    times: tuple[list[float], list[float]] = ([], [])
    for number in range(runs):
        pair = (first, second) if number % 2 else (second, first)
        for action in pair:
            started = time.perf_counter()
            action()
            times[action is second].append(time.perf_counter() - started)
    ratios = [a / b for a, b in zip(*times, strict=True)]
    return statistics.median(times[0]), statistics.median(times[1]), statistics.median(ratios)


def ok(result: object) -> None:
    assert getattr(result, "status", None) is Status.OK, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="pairs per ratio")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    builds = {name: build_seconds((name,)) for name in ("six", "numpy")}
    numpy_env = with_packages("numpy")  # built above into a throw-away cache; here, for good
    with Sandbox(numpy_env, pool=2, preload=["numpy"]) as box:
        for _ in range(6):  # both pooled sandboxes started and used
            ok(box.run_code("import numpy"))
        numpy_ms, print_ms, preload_ratio = alternated(
            lambda: ok(box.run_code("import numpy")),
            lambda: ok(box.run_code("print(1)")),
            args.runs,
        )
    argv = ["python3", "-c", "import sys"]
    with Sandbox(numpy_env) as shown, Sandbox(Policy.load("default")) as plain:
        for _ in range(3):
            ok(shown.run(argv))
            ok(plain.run(argv))
        shown_ms, plain_ms, fresh_pairs = alternated(
            lambda: ok(shown.run(argv)), lambda: ok(plain.run(argv)), args.runs // 2
        )
    fresh_ratio = shown_ms / plain_ms

    figures = {
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "build_seconds": builds,
        "pooled_import_numpy_ms": numpy_ms * 1e3,
        "pooled_print_ms": print_ms * 1e3,
        "preloaded_import_vs_print": preload_ratio,
        "fresh_with_environment_ms": shown_ms * 1e3,
        "fresh_without_ms": plain_ms * 1e3,
        "fresh_with_vs_without": fresh_ratio,
        "fresh_with_vs_without_pairs": fresh_pairs,
    }
    targets = {
        "pooled import numpy (preloaded) <= 1.2x pooled print(1)": preload_ratio <= 1.2,
        "fresh run with an environment <= 1.05x without (medians)": fresh_ratio <= 1.05,
    }
    if args.json:
        print(json.dumps({"figures": figures, "targets": targets}, indent=2))
        return 0 if all(targets.values()) else 1
    print(f"machine: {figures['cores']} cores, load {figures['load_average']:.2f}")
    for name, seconds in builds.items():
        print(f"build on first use: {name:<6}       {seconds:8.2f} s")
    print(
        f"pooled import numpy, preloaded {numpy_ms * 1e3:8.2f} ms   "
        f"pooled print(1) {print_ms * 1e3:.2f} ms: {preload_ratio:.3f}x"
    )
    print(
        f"fresh run, environment shown   {shown_ms * 1e3:8.2f} ms   "
        f"without {plain_ms * 1e3:.2f} ms: {fresh_ratio:.3f}x (pair by pair {fresh_pairs:.3f}x)"
    )
    for target, met in targets.items():
        print(f"{'MET ' if met else 'MISS'} {target}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

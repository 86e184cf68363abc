"""A tiny run of the benchmark harness (bench/run.py): bare and ours (fresh and pooled)
only, a few rounds.

It checks the shape of the table and of the JSON, and that the numbers are positive; it
asserts nothing about speed (that is what the benchmark itself is for). Bad options are
checked too: refused up front, on the command line, with what would have been valid.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (real sandboxes)")
def test_a_few_rounds_give_a_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    harness = _harness()
    out = tmp_path / "results.json"
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nanalysis above\n<!-- results -->\nold\n<!-- /results -->\nbelow\n")
    harness.main(
        [
            "--runs", "3", "--warmup", "1", "--only", "bare,stockade-api,stockade-pool",
            "--programs", "true,py-print", "--concurrency", "1", "--throughput-seconds", "0.2",
            "--memory-runs", "1", "--hold-seconds", "0.5", "--json", str(out),
            "--results-md", str(md),
        ]
    )  # fmt: skip
    table = capsys.readouterr().out
    report = json.loads(out.read_text())

    assert set(report) >= {"date", "machine", "interpreter", "contenders", "programs", "targets"}
    assert report["interpreter"]["workload_python"] == os.path.realpath(
        report["interpreter"]["workload_python"]
    )
    ours = ("bare", "stockade-api", "stockade-pool")
    assert all(report["contenders"][name]["available"] for name in ours)
    for name, contenders in (("true", ours[:2]), ("py-print", ours)):  # the pool runs source
        block = report["programs"][name]
        assert block["rounds"] == 3
        assert set(block["results"]) == set(contenders)
        for contender, entry in block["results"].items():
            assert entry["runs"] == 3 and entry["failed"] == 0, (name, contender, entry)
            assert 0 < entry["min_ms"] <= entry["median_ms"] <= entry["p90_ms"] <= entry["max_ms"]
            assert len(block["samples_ms"][contender]) == 3
        pair = block["results"]["stockade-api"]["vs_bare"]
        assert pair["ratio"] > 0
        assert block["title"] in table
    for contender in ("bare", "stockade-api"):
        assert report["throughput"][contender]["runs_per_s"]["1"] > 0
    assert report["throughput"]["stockade-api"]["memory_mib_per_run"] > 0
    assert "stockade-pool" not in report["throughput"]  # it has no /bin/true to run
    assert report["programs"]["py-print"]["results"]["stockade-pool"]["vs_stockade-api"]["ratio"]
    assert report["targets"][0]["target"].startswith("stockade-api / bwrap")

    header = "contender             median      p90      min      max  x bare x bwrap +bare ms"
    assert header in table
    assert "Targets (pairwise median ratios):" in table
    text = md.read_text()
    assert text.startswith("# Results\n\nanalysis above\n<!-- results -->\n```\n")
    assert text.endswith("```\n<!-- /results -->\nbelow\n") and "old" not in text


def _command_line(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Short settings and a JSON of its own: should a bad option get through, the run is
    # short and bench/results.json is left alone.
    quick = ["--runs", "1", "--warmup", "0", "--throughput-seconds", "0", "--memory-runs", "0"]
    out = ["--json", str(tmp_path / "results.json")]
    env = {**os.environ, "COLUMNS": "300"}  # --help unwrapped: names stay whole
    return subprocess.run(
        [sys.executable, str(BENCH), *quick, *out, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--programs", "/bin/true", "argument --programs: unknown program '/bin/true' "
         "(choose from true, py-S-pass, py-print, py-work)"),
        ("--only", "bogus", "argument --only: unknown contender 'bogus' (choose from bare, "),
        ("--only", ",", "argument --only: no contender in ','"),
        ("--concurrency", "1,x", "argument --concurrency: 'x' is not an integer >= 1"),
        ("--runs", "0", "argument --runs: '0' is not an integer >= 1"),
    ],
)  # fmt: skip
def test_a_bad_option_is_refused_before_anything_runs(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    done = _command_line(tmp_path, option, value)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"run.py: error: {message}"), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "results.json").exists()


def test_help_lists_the_programs_and_contenders(tmp_path: Path) -> None:
    harness = _harness()
    timed = [name for name in harness.programs(sys.executable, 1.0) if name != "sleep"]
    assert timed == harness.PROGRAMS  # the choices are the programs the file defines
    done = _command_line(tmp_path, "--help")
    assert done.returncode == 0
    assert ", ".join(harness.PROGRAMS) in done.stdout
    assert ", ".join(harness.ALL) in done.stdout

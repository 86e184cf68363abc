"""The demo and the examples leave nothing in the temp directory but the one directory they
announce, holding their traces only. Each runs with a TMPDIR of its own, so runs of other
tests (or other users of /tmp) cannot be mistaken for theirs; the sandbox's own run dirs go
there too, and must be gone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = {
    "demo": ["-m", "stockade.agents.demo", "--offline"],
    "agent_handoff": [str(ROOT / "examples" / "agent_handoff.py")],
    "support_pipeline": [str(ROOT / "examples" / "support_pipeline.py")],
}
MODEL_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT")


@pytest.mark.usefixtures("real_sandbox")
@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_only_the_announced_trace_is_left(program: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in MODEL_VARIABLES}
    env.update(TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, *PROGRAMS[program]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    announced = re.findall(rf"{re.escape(str(tmp_path))}/[^/\s]+", done.stdout)
    assert announced, done.stdout
    left = [path.name for path in tmp_path.iterdir()]
    assert left == [Path(announced[-1]).name], (left, done.stdout)
    kept = [path.name for path in Path(announced[-1]).iterdir()]
    assert kept and all(name.endswith(".jsonl") for name in kept), kept

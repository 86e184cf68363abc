"""`python -m stockade.agents.demo` runs offline out of the box: a failing test run, then a
passing one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stockade.agents import OpenAIModel, Trace
from stockade.agents.demo import model_from_env

ROOT = Path(__file__).resolve().parents[2]
MODEL_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
)


@pytest.mark.usefixtures("real_sandbox")
def test_the_demo_shows_the_failing_then_the_passing_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in MODEL_VARIABLES}
    env["PYTHONPATH"] = str(ROOT)
    trace = tmp_path / "demo.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "stockade.agents.demo", "--trace", str(trace)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "model: scripted (offline)" in out
    failed = out.index("sandbox: tests FAILED")
    passed = out.index("sandbox: tests PASSED")
    assert failed < out.index("── round 2 of 3") < passed
    assert "AssertionError: median([4, 1, 3, 2]) returned 3, expected 2.5" in out[failed:passed]
    assert "reviewer ran in the sandbox (run_code):" in out[failed:passed]
    assert "4 passed, 0 failed" in out[passed:]
    assert "Result: the tests passed in round 2 of 3." in out
    statuses = [e.status for e in Trace.read(trace).of_kind("sandbox_run")]  # type: ignore[attr-defined]
    assert statuses == ["nonzero_exit", "ok", "ok"]


def test_the_demo_uses_a_real_model_when_one_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MODEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert model_from_env() is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_MODEL", "local-model")
    model = model_from_env()
    assert isinstance(model, OpenAIModel) and model.name == "local-model"
    assert str(model.client.base_url) == "http://127.0.0.1:9/v1/"
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt4o")
    azure = model_from_env()
    assert isinstance(azure, OpenAIModel) and azure.name == "gpt4o"

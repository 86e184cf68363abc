"""The example programs run as printed (the documents' examples: tests/test_docs.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from agents_testkit import example_module

from stockade.agents import Memory, StateError


def test_handoff_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "agent_handoff.py"
    with example_module(path, "agent_handoff_example") as module:
        asyncio.run(module.main(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("handoff - refund_desk")
    assert out[1].startswith("completed - refund_desk")
    assert (tmp_path / "refund.jsonl").exists()


def test_unopenable_memory_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot open the memory store"):
        Memory(tmp_path / "no" / "such" / "dir" / "m.db")

"""The README section's example and the example programs run as printed."""

from __future__ import annotations

import asyncio
import re
import sys
import types
from pathlib import Path

import pytest

from agents import Memory, StateError

README = Path(__file__).resolve().parents[2] / "agents" / "README_SECTION.md"


def test_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    # dataclasses look the defining module up in sys.modules, so give the example one.
    module = types.ModuleType("agents_readme_example")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, str(README), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    expected = re.search(r"# (completed - .*)", code)
    assert expected is not None
    assert capsys.readouterr().out.strip() == expected.group(1)


def test_handoff_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "agent_handoff.py"
    module = types.ModuleType("agent_handoff_example")
    sys.modules[module.__name__] = module
    try:
        exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
        asyncio.run(module.main(tmp_path))
    finally:
        del sys.modules[module.__name__]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("handoff - refund_desk")
    assert out[1].startswith("completed - refund_desk")
    assert (tmp_path / "refund.jsonl").exists()


def test_unopenable_memory_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot open the memory store"):
        Memory(tmp_path / "no" / "such" / "dir" / "m.db")

"""The README section's examples and the example programs run as printed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from agents_testkit import example_module
from stockade.agents import Memory, StateError

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = README.read_text().split("\n## The agent layer\n", 1)[1].split("\n## ", 1)[0]

# The runnable examples: those that end with what they print, as a comment.
BLOCKS = [
    code
    for code in re.findall(r"```python\n(.*?)```", SECTION, re.S)
    if code.rstrip().splitlines()[-1].startswith("# ")
]


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_readme_examples_print_what_they_say(
    number: int, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    code = BLOCKS[number]
    if "CodeExecutionAgent" in code:
        request.getfixturevalue("real_sandbox")
    expected = code.rstrip().splitlines()[-1]
    with example_module(README, f"agents_readme_example_{number}", code):
        pass
    assert capsys.readouterr().out.strip() == expected[2:]


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

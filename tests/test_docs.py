"""The documents' runnable examples print what the documents say they print.

The convention (docs/architecture.md, "Documentation that runs"):
- a ```python block whose last lines are comments (`# ...`) is runnable: it runs in a fresh
  `python -c`, and its standard output must equal those comment lines, without the `# `;
- a ```console block is runnable: each `$ ` line runs in bash, and the lines after it, up to
  the next `$ `, must equal its standard output and standard error together.
Other blocks are commands to copy, shapes or excerpts, and are not run. Every example runs a
real sandbox, so this needs root.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)
TIMEOUT = 120


class Block(NamedTuple):
    where: str  # document:line, for the test's id
    language: str
    code: str


def blocks() -> list[Block]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in FENCE.finditer(text):
            language, code = match.groups()
            if language == "console" or (language == "python" and _expected_comments(code)):
                line = text.count("\n", 0, match.start()) + 1
                found.append(Block(f"{document.relative_to(ROOT)}:{line}", language, code))
    return found


def _expected_comments(code: str) -> list[str]:
    """The comment lines that end a Python block: what it prints."""
    lines = code.rstrip("\n").split("\n")
    tail: list[str] = []
    while lines and lines[-1].startswith("#"):
        tail.insert(0, lines.pop().removeprefix("#").removeprefix(" "))
    return tail


def _console_steps(code: str) -> list[tuple[str, list[str]]]:
    """Each `$ ` command of a console block with the output lines that follow it."""
    steps: list[tuple[str, list[str]]] = []
    for line in code.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before any command: {line!r}"
            steps[-1][1].append(line)
    return steps


def _environment() -> dict[str, str]:
    # The commands the documents name (`sandbox`, `stockade`) are this interpreter's.
    bin_dir = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}


BLOCKS = blocks()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the examples run real sandboxes)")
@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_example_prints_what_the_document_says(block: Block, tmp_path: Path) -> None:
    if block.language == "python":
        completed = subprocess.run(
            [sys.executable, "-c", block.code],
            cwd=tmp_path,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.splitlines() == _expected_comments(block.code)
        return
    for command, expected in _console_steps(block.code):
        completed = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT,
        )
        assert completed.stdout.splitlines() == expected, command


def test_every_document_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for document in DOCUMENTS[1:]:
        assert f"]({document.relative_to(ROOT)})" in readme, document.name


def test_there_are_examples_to_run() -> None:
    # A change to the fences or the convention must not quietly leave nothing to test.
    assert sum(block.language == "python" for block in BLOCKS) >= 8
    assert sum(block.language == "console" for block in BLOCKS) >= 3

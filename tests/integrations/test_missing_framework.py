"""An adapter whose framework is not installed says which extra installs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys
sys.modules[sys.argv[1]] = None  # as if not installed: importing it raises ImportError
try:
    __import__("stockade.integrations." + sys.argv[2])
except ImportError as error:
    print(error)
"""


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [
        ("openai_agents_sandbox", "agents", "openai-agents"),
        ("pydantic_ai_workspace", "pydantic_ai", "pydantic-ai"),
        ("smolagents", "smolagents", "smolagents"),
    ],
)
def test_an_adapter_without_its_framework_names_the_extra(
    tmp_path: Path, module: str, framework: str, extra: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, framework, module],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,  # not the repo's agents/
    )  # fmt: skip
    (said,) = done.stdout.splitlines() or [done.stderr]
    assert said.startswith(f"stockade.integrations.{module} needs {framework}")  # or .sub
    assert said.endswith(f": pip install 'stockade[{extra}]'")

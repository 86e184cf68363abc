"""How Stockade is installed: one `stockade` namespace made from the repository's folders,
and no top-level name that collides with a package of the agent ecosystem."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OURS = {"stockade": "sandbox", "stockade.agents": "agents", "stockade.policies": "policies"}

BOTH = """
import agents, stockade.agents
from agents import Agent, Runner, function_tool
from stockade.agents import ChatAgent, GroupChat
print(agents.__name__, Agent.__module__.split(".")[0], ChatAgent.__module__)
"""


def test_the_openai_agents_sdk_and_stockade_import_side_by_side(tmp_path: Path) -> None:
    # -P and a fresh cwd: only what is installed counts, not the repository's own folders.
    done = subprocess.run(
        [sys.executable, "-P", "-c", BOTH], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["agents", "agents", "stockade.agents.agent"]


def test_stockade_installs_no_top_level_name_but_its_own(tmp_path: Path) -> None:
    # What the installed distribution's RECORD lists (an egg-info in the repository would
    # answer instead without -P and a fresh cwd).
    listing = "import importlib.metadata as m; print(*m.files('stockade'), sep='\\n')"
    done = subprocess.run(
        [sys.executable, "-P", "-c", listing], capture_output=True, text=True, cwd=tmp_path
    )
    tops = {Path(line).parts[0] for line in done.stdout.splitlines()}
    tops = {top for top in tops if not top.endswith(".dist-info")}
    assert done.returncode == 0 and tops, done.stderr
    # An editable install adds only its finder and .pth; "..": the scripts in bin/.
    assert not {"agents", "sandbox", "policies"} & {Path(top).stem for top in tops}, tops


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == OURS
    folders = set()
    for package, folder in OURS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            folders.add(".".join((package, *parts)))
    assert set(config["packages"]) == folders

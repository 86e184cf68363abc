"""sandbox="docker": refused with a clear error unless a Docker engine answers.

No Docker engine is needed: a stand-in `docker` command on PATH plays the engine that is down
and the engine that answers (its `run` unpacks the files and runs the program on the host,
which is enough to check the plumbing: files in, output and exit codes out, the time limit).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from stockade import Policy
from stockade.agents import CodeBlock, CodeExecutionAgent, ConfigError
from stockade.agents.execution.docker import DockerExecutor, engine_problem

DOWN = """#!/bin/sh
echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2
exit 1
"""
UP = """#!/bin/sh
dir="$(dirname "$0")"
echo "$@" >> "$dir/calls.log"
case "$1" in
  version) echo 27.0.1; exit 0;;
  kill) kill "$(cat "$dir/$2.pid")"; exit 0;;
esac
while [ "$1" != "sh" ] || [ "$2" != "-c" ]; do
  [ "$1" = "--name" ] && name="$2"
  shift
done
echo $$ > "$dir/$name.pid"
cd "$(mktemp -d -p "$dir")" && exec "$@"
"""


def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(script)
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_docker_is_refused_when_no_engine_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch, DOWN)
    with pytest.raises(ConfigError) as refused:
        CodeExecutionAgent(sandbox="docker")
    assert "needs a reachable Docker engine" in str(refused.value)
    assert "Cannot connect to the Docker daemon" in str(refused.value)
    assert "sandbox='built-in'" in refused.value.hint


def test_docker_is_refused_when_not_installed() -> None:
    assert (
        engine_problem("/nonexistent/docker")
        == "the '/nonexistent/docker' command is not installed"
    )


def test_docker_is_used_when_an_engine_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_docker(tmp_path, monkeypatch, UP)
    runner = CodeExecutionAgent(sandbox="docker", timeout=5)
    block = CodeBlock(code="print(open('data.txt').read())", files={"data.txt": "from a file"})
    result = asyncio.run(runner.execute(block))
    assert result.ok and result.stdout == "from a file\n"
    failed = asyncio.run(runner.execute(CodeBlock(code="exit 4", language="sh")))
    assert failed.status == "nonzero_exit" and failed.exit_code == 4
    run_line = (bin_dir / "calls.log").read_text().splitlines()[1]
    for flag in ("--network none", "--cap-drop ALL", "no-new-privileges", "--read-only"):
        assert flag in run_line


def test_docker_runs_are_stopped_at_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch, UP)
    executor = DockerExecutor.connect(Policy.load("default").override(timeout=0.5))
    result = executor.run_code("exec sleep 30", "sh")
    assert result.status == "timeout" and result.wall_time < 10


def test_the_docker_command_line_carries_the_policys_limits() -> None:
    policy = Policy.load("default").override(memory="128M", pids=32)
    argv = DockerExecutor(policy, image="python:3.12-alpine").command("stockade-x", "python")
    line = " ".join(argv)
    assert f"--memory {128 << 20}" in line and "--pids-limit 32" in line
    assert "--user 65534:65534" in line
    assert argv[-3:] == ["sh", "python3", "main.py"]
    assert "python:3.12-alpine" in argv

"""Traces: JSON lines written as events happen, read back, and shown as a timeline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from agents_testkit import Say

from stockade.agents import (
    ChatAgent,
    ConfigError,
    GroupChat,
    Message,
    MessageValidationError,
    ModelResponse,
    Runtime,
    ScriptedModel,
    StateError,
    Trace,
)
from stockade.agents.trace.__main__ import main
from stockade.agents.trace.events import EventAdapter, SandboxRunEvent

ROOT = Path(__file__).resolve().parents[2]


def traced_chat(path: Path) -> GroupChat:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    model = ScriptedModel([ModelResponse.calling("add", {"a": 2, "b": 3}), "2 + 3 = 5"])
    solver = ChatAgent("solver", tools=[add], model=model)
    return GroupChat([solver, Say("checker", ["STOP"])], routing="round_robin", trace=path)


def test_trace_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    chat = traced_chat(path)
    result = asyncio.run(chat.run("what is 2 + 3?"))
    kinds = [e.kind for e in result.trace]  # type: ignore[attr-defined]
    assert kinds == [
        "message",
        "routing",
        "model_call",
        "tool_call",
        "model_call",
        "message",
        "routing",
        "termination",
    ]
    assert len(path.read_text().splitlines()) == len(kinds)  # written as it happened
    loaded = Trace.read(path)
    assert [e.model_dump() for e in loaded] == [e.model_dump() for e in result.trace]
    copy = result.trace.write(tmp_path / "copy.jsonl")
    assert Trace.read(copy).to_jsonl() == result.trace.to_jsonl()


def test_sandbox_run_event_from_a_result_like_object() -> None:
    fake = SimpleNamespace(
        status=SimpleNamespace(value="timeout"),
        exit_code=None,
        stdout="partial",
        stderr="",
        wall_time=5.0,
        error=None,
    )
    event = SandboxRunEvent.from_result("runner", "python", "while True: pass", fake)
    trace = Trace()
    trace.record(event)
    back = EventAdapter.validate_json(trace.to_jsonl())
    assert isinstance(back, SandboxRunEvent)
    assert (back.status, back.stdout, back.wall_time) == ("timeout", "partial", 5.0)
    assert back.kind == "sandbox_run"

    runtime = Runtime()
    runtime.record_sandbox_run("runner", "python", "print(1)", fake)
    assert runtime.counters.sandbox_runs == 1
    assert runtime.trace.of_kind("sandbox_run")[0].code == "print(1)"  # type: ignore[attr-defined]


def test_malformed_trace_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"kind": "termination", "reason": "completed"}\n{"kind": "nope"}\n')
    with pytest.raises(StateError, match=r"bad.jsonl:2"):
        Trace.read(path)


def test_timeline_view(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.jsonl"
    asyncio.run(traced_chat(path).run("what is 2 + 3?"))
    assert main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    assert lines[0].startswith("+   0.000s  message")
    assert "user → -  TextMessage: what is 2 + 3?" in lines[0]
    assert "round_robin: user → solver" in lines[1]
    assert "add(" in lines[3] and "ok → 5" in lines[3]
    assert "completed after 2 turn(s)" in lines[-1]
    assert main([str(path), "--kind", "tool_call"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main([str(tmp_path / "missing.jsonl")]) == 1


@pytest.mark.parametrize("where", ["missing dir", "a directory"])
def test_unwritable_trace_path_is_refused_up_front(tmp_path: Path, where: str) -> None:
    path = tmp_path / "nodir" / "x.jsonl" if where == "missing dir" else tmp_path
    with pytest.raises(ConfigError, match=r"trace=.*cannot be written") as refused:
        traced_chat(path)  # refused when the chat is built, not at its first event
    assert str(path) in str(refused.value)
    with pytest.raises(ConfigError, match=r"trace="):
        Runtime(trace=path)


def test_unknown_kind_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.jsonl"
    asyncio.run(traced_chat(path).run("what is 2 + 3?"))
    with pytest.raises(SystemExit) as exited:
        main([str(path), "--kind", "bogus"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--kind" in captured.err and "'bogus'" in captured.err
    assert "'model_call'" in captured.err and "'termination'" in captured.err


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    asyncio.run(traced_chat(path).run("what is 2 + 3?"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "stockade.agents.trace", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "termination" in done.stdout


def test_what_json_cannot_hold_is_refused_without_breaking_the_trace(tmp_path: Path) -> None:
    model = ScriptedModel(["half an emoji: \ud83d"])  # a lone surrogate, as a server may send
    chat = GroupChat([ChatAgent("a", model=model)], routing="role_based", trace=tmp_path / "t")
    result = asyncio.run(chat.run("hi"))
    assert result.termination == "error"
    assert Trace.read(tmp_path / "t").events  # the file and the trace agree, and still serialise
    assert result.trace.to_jsonl().count("\n") == len(result.trace.events)

    @dataclass
    class Note(Message):
        data: str

    other = GroupChat([ChatAgent("b", model=ScriptedModel(["x"]))], routing="role_based")
    with pytest.raises(MessageValidationError) as refused:
        asyncio.run(other.run(Note("\udcff"), to="b"))
    assert refused.value.field == "data"
    assert other.runtime.save_state()["conversation"] == []  # refused before it joined


def test_a_file_that_is_not_text_is_not_a_trace(tmp_path: Path) -> None:
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(StateError, match="not UTF-8"):
        Trace.read(tmp_path / "binary")
    assert main([str(tmp_path / "binary")]) == 1

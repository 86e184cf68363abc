"""A sandbox that cannot set up a run ends the chat with `error` and the sandbox's hint, and
stops the review loop and the demo at once, before they spend every round's model calls.

The machine under test can run every policy, so the sandbox's refusals come from executor
doubles: the kernel is not under test here, what the agent layer does with the refusal is."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from pathlib import Path

import pytest

from stockade import Result, SetupError, Status, UnsupportedError
from stockade.agents import (
    ChatAgent,
    CodeBlock,
    CodeExecutionAgent,
    GroupChat,
    SandboxSetupError,
    ScriptedModel,
    demo,
)
from stockade.agents.patterns import code_review_loop

HINT = "delegate a cgroup to this user, or run as root"


class Refusing:
    """An executor whose sandbox refuses every run, as `stockade.Sandbox` does where the
    machine lacks what the policy asks for, or hands back a run that failed in its setup."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.calls = 0

    def run_code(
        self, code: str, language: str = "python", *, files: Mapping[str, bytes | str] | None = None
    ) -> Result:
        self.calls += 1
        if self.how == "unsupported":
            raise UnsupportedError("cgroup v2 memory controller not delegated", hint=HINT)
        if self.how == "setup_error":
            raise SetupError("mounts.build_root", 1, "overlayfs")
        error = "setup step 'cgroups.join' failed: EACCES: Permission denied"
        return Result(Status.SETUP_FAILED, None, None, b"", b"", False, False, 0.0, 0.0, 0, error)


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("unsupported", f"cgroup v2 memory controller not delegated (hint: {HINT})"),
        ("setup_error", "setup step 'mounts.build_root' failed: EPERM"),
        ("setup_failed", "setup step 'cgroups.join' failed: EACCES"),
    ],
)
def test_a_sandbox_that_cannot_set_up_ends_the_chat_with_error(how: str, said: str) -> None:
    runner = CodeExecutionAgent(name="runner", sandbox=Refusing(how))
    chat = GroupChat(agents=[runner], routing="role_based")
    result = asyncio.run(chat.run(CodeBlock(code="print(1)")))
    assert result.termination == "error"
    assert isinstance(result.error, SandboxSetupError)
    assert said in result.detail and said in str(result.error)
    assert len(result.messages) == 1  # no ExecutionResult went on to be read as code output


def test_the_review_loop_stops_at_the_first_run() -> None:
    fence = "`" * 3
    specialist = ChatAgent(
        "specialist", model=ScriptedModel([f"{fence}python\nx = 1\n{fence}"] * 3)
    )
    reviewer = ChatAgent("reviewer", model=ScriptedModel(["fine"] * 3))
    refusing = Refusing("unsupported")
    runner = CodeExecutionAgent("code_runner", sandbox=refusing)
    with pytest.raises(SandboxSetupError, match="hint: delegate") as caught:
        asyncio.run(code_review_loop(specialist, runner, reviewer, "x", "def test(): pass", 3))
    assert isinstance(caught.value.__cause__, UnsupportedError)
    assert refusing.calls == 1
    calls = [e.agent for e in specialist.host.trace.of_kind("model_call")]  # type: ignore[attr-defined]
    assert calls == ["specialist"]  # one model call, not three rounds of them


def test_the_demo_stops_with_the_sandbox_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refusing = Refusing("unsupported")
    monkeypatch.setattr(
        demo, "CodeExecutionAgent", functools.partial(CodeExecutionAgent, sandbox=refusing)
    )
    code = demo.main(["--offline", "--trace", str(tmp_path / "demo.jsonl")])
    out, err = capsys.readouterr()
    assert code == 2
    assert f"cgroup v2 memory controller not delegated (hint: {HINT})" in err
    assert "── round" not in out and refusing.calls == 1

"""The smolagents executor under a real `CodeAgent`, driven by a scripted model (smolagents
ships none: a `Model` whose `generate` answers the next code action, as its own tests do):
the agent's code runs confined, its variables live between steps, a step past the limit is
an error the agent sees and goes on from, and `final_answer` ends the run."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest

pytest.importorskip("smolagents", reason="stockade[smolagents] is not installed")

from adapters_testkit import SPIN, Probe
from smolagents import CodeAgent
from smolagents.memory import ActionStep
from smolagents.models import ChatMessage, MessageRole, Model
from smolagents.tools import Tool
from smolagents.utils import AgentError

from stockade import Sandbox
from stockade.integrations.smolagents import StockadeExecutor


class ScriptedModel(Model):
    """Answers each step with the next code action."""

    def __init__(self, actions: list[str]) -> None:
        super().__init__(model_id="scripted")
        self.actions = iter(actions)

    def generate(self, messages: list[Any], **kwargs: Any) -> ChatMessage:
        action = next(self.actions)
        return ChatMessage(role=MessageRole.ASSISTANT, content=f"<code>\n{action}\n</code>")


class Whoami(Tool):
    """A tool of the agent's, on the host: it answers with the uid it runs as."""

    name = "whoami"
    description = "The uid the tool runs as, and the note it was given."
    inputs: ClassVar[dict[str, Any]] = {
        "note": {"type": "string", "description": "a note"},
        "loud": {"type": "boolean", "description": "shout", "nullable": True},
    }
    output_type = "string"

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []

    def forward(self, note: str, loud: bool | None = None) -> str:
        self.notes.append(note)
        said = f"host uid {os.getuid()} {note}"
        return said.upper() if loud else said


def test_a_code_agent_keeps_state_runs_confined_calls_its_tools_on_the_host(
    confined: Sandbox, probe: Probe
) -> None:
    tool = Whoami()
    actions = [
        probe.code + "x = 21\nprint(whoami('hi'), whoami(note='ho', loud=True))",
        SPIN,
        "final_answer({'x': x * 2})",
    ]
    executor = StockadeExecutor(sandbox=confined)
    model = ScriptedModel(actions)
    with CodeAgent(tools=[tool], model=model, executor=executor, max_steps=5) as agent:
        answer = agent.run("where am I?")
        steps = [step for step in agent.memory.steps if isinstance(step, ActionStep)]
    assert answer == {"x": 42}
    probe.check(steps[0].observations)  # the code: an unprivileged uid, no network
    assert "host uid 0 hi HOST UID 0 HO" in steps[0].observations  # the tool: the host's
    assert tool.notes == ["hi", "ho"]
    assert "status timeout" in str(steps[1].error)
    assert executor.notebook is None  # the agent's exit cleaned the executor up


def test_a_cell_shows_its_last_value_and_its_errors(confined: Sandbox) -> None:
    executor = StockadeExecutor(sandbox=confined)
    try:
        out = executor("import math\nprint('hi')\nmath.sqrt(16)")
        assert (out.output, out.logs, out.is_final_answer) == (4.0, "hi\n", False)
        with pytest.raises(AgentError, match=r"(?s)line 2.*ZeroDivisionError"):
            executor("y = 1\n1 / 0")
        assert executor("y").output == 1  # what ran before the error stays
    finally:
        executor.cleanup()


def test_modules_it_cannot_import_are_refused_at_once(confined: Sandbox) -> None:
    with pytest.raises(AgentError, match=r"not importable in the sandbox: \['no_such_module'\]"):
        StockadeExecutor(["json", "no_such_module"], sandbox=confined)

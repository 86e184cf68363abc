"""The CrewAI tool in a real `Crew`, driven by a scripted LLM (CrewAI ships no fake model: a
`BaseLLM` answering the next ReAct step, the extension point CrewAI documents for custom
models): the agent's code runs confined, and a run past the limit is stopped.

CrewAI pins mcp<2 and openai<3, so it is not in the `test` extra: .ci/run installs it in a
venv of its own and runs this file there."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

# Offline: CrewAI exports no telemetry. Its own switch only: OTEL_SDK_DISABLED would turn off
# OpenTelemetry for every test of the process.
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
pytest.importorskip(
    "crewai", reason="crewai conflicts with the test extra (mcp<2, openai<3): .ci/run tests it"
)

from adapters_testkit import SPIN, Probe
from crewai import Agent, Crew, Task
from crewai.llms.base_llm import BaseLLM
from pydantic import Field

from stockade import Sandbox
from stockade.integrations.crewai import StockadePythonTool


class ScriptedLLM(BaseLLM):
    """Answers each call with the next scripted ReAct step; keeps what it was sent."""

    answers: list[str]
    seen: list[Any] = Field(default_factory=list)

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        self.seen.append(messages)
        return self.answers.pop(0)

    def supports_function_calling(self) -> bool:
        return False


def action(code: str) -> str:
    return f"Thought: run it\nAction: run_python\nAction Input: {json.dumps({'code': code})}"


def test_a_crews_code_runs_confined_and_the_limit_holds(confined: Sandbox, probe: Probe) -> None:
    llm = ScriptedLLM(
        model="scripted",
        answers=[action(probe.code), action(SPIN), "Thought: seen\nFinal Answer: done"],
    )
    tool = StockadePythonTool(sandbox=confined)
    agent = Agent(role="analyst", goal="look around", backstory="careful", llm=llm, tools=[tool])
    task = Task(description="Where am I?", expected_output="a word", agent=agent)
    output = Crew(agents=[agent], tasks=[task]).kickoff()
    assert str(output) == "done"
    shown = json.dumps(llm.seen[-1])
    probe.check(shown)
    assert "status timeout" in shown


def test_the_tool_runs_directly(confined: Sandbox) -> None:
    tool = StockadePythonTool(sandbox=confined)
    assert "ZeroDivisionError" in tool.run(code="1/0")

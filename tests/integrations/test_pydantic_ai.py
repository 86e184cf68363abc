"""The Pydantic AI tool in a Pydantic AI `Agent`, driven by the package's own `FunctionModel`:
the model's code runs confined, and a run past the limit is stopped."""

from __future__ import annotations

import pytest

pytest.importorskip("pydantic_ai", reason="stockade[pydantic-ai] is not installed")

from adapters_testkit import SPIN, Probe
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from stockade import Sandbox
from stockade.integrations.pydantic_ai import python_tool


def returns(messages: list[ModelMessage]) -> list[str]:
    return [
        part.content
        for message in messages
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]


async def test_an_agents_code_runs_confined_and_the_limit_holds(
    confined: Sandbox, probe: Probe
) -> None:
    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        assert [tool.name for tool in info.function_tools] == ["run_python"]
        done = returns(messages)
        if len(done) < 2:
            code = (probe.code, SPIN)[len(done)]
            return ModelResponse(parts=[ToolCallPart("run_python", {"code": code})])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(model), tools=[python_tool(confined)])
    result = await agent.run("where am I?")
    first, second = returns(result.all_messages())
    probe.check(first)
    assert "status timeout" in second
    assert result.output == "done"

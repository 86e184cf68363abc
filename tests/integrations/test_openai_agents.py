"""The OpenAI Agents SDK function tool in an SDK `Agent`, driven by the SDK's own
`agents.testing.ScriptedModel`: the model's code runs confined, and a run past the limit is
stopped."""

from __future__ import annotations

import pytest

pytest.importorskip("agents.testing", reason="stockade[openai-agents] is not installed")

from adapters_testkit import SPIN, Probe
from agents import Agent, Runner, set_tracing_disabled
from agents.items import ToolCallOutputItem
from agents.testing import ScriptedModel, assistant_message, function_call

from stockade import Sandbox
from stockade.integrations.openai_agents import python_tool

set_tracing_disabled(True)  # offline: no trace export


async def test_an_agents_code_runs_confined_and_the_limit_holds(
    confined: Sandbox, probe: Probe
) -> None:
    model = ScriptedModel(
        [
            [function_call("run_python", {"code": probe.code}, call_id="c1")],
            [function_call("run_python", {"code": SPIN}, call_id="c2")],
            [assistant_message("done")],
        ]
    )
    agent = Agent(name="analyst", model=model, tools=[python_tool(confined)])
    result = await Runner.run(agent, "where am I?")
    outputs = [item.output for item in result.new_items if isinstance(item, ToolCallOutputItem)]
    probe.check(outputs[0])
    assert "status timeout" in outputs[1]
    assert result.final_output == "done" and model.remaining_steps == 0


def test_the_tool_has_one_code_argument(confined: Sandbox) -> None:
    tool = python_tool(confined, name="python")
    assert tool.name == "python"
    assert tool.params_json_schema["required"] == ["code"]

"""The LangChain tool in a LangChain agent (`create_agent`) driven by LangChain's own fake
chat model: the model's code runs confined, and a run past the limit is stopped."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain", reason="stockade[langchain] is not installed")

from adapters_testkit import SPIN, Probe
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage

from stockade import Sandbox
from stockade.integrations.langchain import python_tool


class ScriptedChat(GenericFakeChatModel):
    """LangChain's fake chat model, with tools bound as a real model binds them."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChat:
        return self


def calling(code: str, call: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "run_python", "args": {"code": code}, "id": call}])


def test_an_agents_code_runs_confined_and_the_limit_holds(confined: Sandbox, probe: Probe) -> None:
    script = [calling(probe.code, "c1"), calling(SPIN, "c2"), AIMessage("done")]
    agent = create_agent(ScriptedChat(messages=iter(script)), tools=[python_tool(confined)])
    state = agent.invoke({"messages": [("user", "where am I?")]})
    tools = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    probe.check(tools[0].content)
    assert tools[0].artifact["status"] == "ok" and tools[0].artifact["exit_code"] == 0
    assert tools[1].artifact["status"] == "timeout", tools[1].content
    assert "status timeout" in tools[1].content
    assert state["messages"][-1].content == "done"


async def test_the_tool_runs_from_asyncio_too(confined: Sandbox) -> None:
    tool = python_tool(confined)
    message = await tool.ainvoke(
        {"type": "tool_call", "name": "run_python", "id": "c1", "args": {"code": "1/0"}}
    )
    assert "ZeroDivisionError" in message.content and "exit code 1" in message.content
    assert message.artifact["status"] == "nonzero_exit"

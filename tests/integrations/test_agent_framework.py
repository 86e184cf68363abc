"""The Agent Framework `execute_code` tool in a framework `Agent`, driven by a scripted chat
client (the core wheel ships none: `FunctionInvocationLayer` + `BaseChatClient` answering
the next scripted message, as the framework's own tests script theirs): the model's code runs
confined, and a run past the limit comes back as error content."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

pytest.importorskip("agent_framework", reason="stockade[agent-framework] is not installed")

from adapters_testkit import SPIN, Probe
from agent_framework import (
    Agent,
    BaseChatClient,
    ChatResponse,
    Content,
    FunctionInvocationLayer,
    Message,
)

from stockade import Sandbox
from stockade.integrations.agent_framework import StockadeExecuteCodeTool


class ScriptedClient(FunctionInvocationLayer, BaseChatClient):
    """Answers each request with the next scripted message; records what it was sent."""

    def __init__(self, script: Sequence[Message]) -> None:
        super().__init__()
        self.script: Iterator[Message] = iter(script)
        self.seen: list[Message] = []

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Any, **kwargs: Any
    ) -> Any:
        self.seen = list(messages)

        async def answer() -> ChatResponse:
            return ChatResponse(messages=[next(self.script)])

        return answer()


def calling(code: str, call: str) -> Message:
    return Message(
        "assistant", [Content.from_function_call(call, "execute_code", arguments={"code": code})]
    )


async def test_an_agents_code_runs_confined_and_the_limit_holds(
    confined: Sandbox, probe: Probe
) -> None:
    client = ScriptedClient(
        [calling(probe.code, "c1"), calling(SPIN, "c2"), Message("assistant", ["done"])]
    )
    agent = Agent(client=client, tools=[StockadeExecuteCodeTool(confined)])
    response = await agent.run("where am I?")
    results = [
        content
        for message in client.seen
        for content in message.contents
        if content.type == "function_result"
    ]
    assert [r.call_id for r in results] == ["c1", "c2"]
    probe.check(str(results[0].result))
    assert "status timeout" in results[1].result
    assert results[1].items[-1].type == "error"
    assert response.text == "done"


async def test_a_failed_run_is_its_text_and_error_content(confined: Sandbox) -> None:
    tool = StockadeExecuteCodeTool(confined)
    assert tool.name == "execute_code"
    [text] = await tool.invoke(arguments={"code": "print(6 * 7)"})
    assert text.text == "42"
    text, error = await tool.invoke(arguments={"code": "1/0"})
    assert "ZeroDivisionError" in text.text and "exit code 1" in text.text
    assert error.type == "error" and error.message == "Execution nonzero_exit"

"""The Agent Framework `execute_code` tool and CodeAct provider in a framework `Agent`, driven
by a scripted chat client (the core wheel ships none: `FunctionInvocationLayer` +
`BaseChatClient` answering the next scripted message, as the framework's own tests script
theirs): the model's code runs confined, a run past the limit comes back as error content,
and CodeAct code calls the agent's tools on the host."""

from __future__ import annotations

import os
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
    tool,
)

from stockade import Sandbox
from stockade.integrations.agent_framework import StockadeCodeActProvider, StockadeExecuteCodeTool


class ScriptedClient(FunctionInvocationLayer, BaseChatClient):
    """Answers each request with the next scripted message; records what it was sent."""

    def __init__(self, script: Sequence[Message]) -> None:
        super().__init__()
        self.script: Iterator[Message] = iter(script)
        self.seen: list[Message] = []
        self.options: Any = {}

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Any, **kwargs: Any
    ) -> Any:
        self.seen, self.options = list(messages), options

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


async def test_codeact_calls_the_agents_tools_on_the_host(confined: Sandbox, probe: Probe) -> None:
    looked_up: list[int] = []

    @tool
    async def lookup_account(account_id: int) -> dict[str, Any]:
        """Find a customer's account by its number."""
        looked_up.append(account_id)
        return {"id": account_id, "plan": "pro", "host_uid": os.getuid()}

    code = probe.code + "print(lookup_account(account_id=7))\nlookup_account(account_id='x')"
    client = ScriptedClient([calling(code, "c1"), Message("assistant", ["done"])])
    codeact = StockadeCodeActProvider(sandbox=confined, tools=[lookup_account])
    agent = Agent(client=client, context_providers=[codeact])
    response = await agent.run("what plan is account 7 on?")
    [result] = [c for m in client.seen for c in m.contents if c.type == "function_result"]
    probe.check(result.result)  # the code: an unprivileged uid, no network
    assert "{'id': 7, 'plan': 'pro', 'host_uid': 0}" in result.result  # the tool: the host's
    assert "ToolArgumentError" in result.result and looked_up == [7]  # 'x' was refused
    assert response.text == "done"
    assert "`lookup_account(account_id)`: Find a customer's" in client.options["instructions"]


def test_a_tool_that_needs_approval_makes_execute_code_need_it(confined: Sandbox) -> None:
    @tool(approval_mode="always_require")
    def refund(amount: float) -> str:
        """Refund an amount."""
        return "refunded"

    codeact = StockadeCodeActProvider(sandbox=confined)
    run_tool = StockadeExecuteCodeTool(confined, tools=[refund])
    assert run_tool.approval_mode == "always_require"
    run_tool.remove_tool("refund")
    assert run_tool.approval_mode == "never_require" and run_tool.get_tools() == []
    codeact.add_tools(refund)
    assert [t.name for t in codeact.get_tools()] == ["refund"]

"""The AutoGen executor under AutoGen's own consumers: `CodeExecutorAgent` driven by its
`ReplayChatCompletionClient`, and `PythonCodeExecutionTool`; blocks run confined, a limit
holds, cancelling kills the run, and the component round-trips through its config."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("autogen_agentchat", reason="stockade[autogen] is not installed")

from adapters_testkit import SPIN, TIMEOUT, Probe
from autogen_agentchat.agents import ApprovalRequest, ApprovalResponse, CodeExecutorAgent
from autogen_agentchat.messages import CodeExecutionEvent, TextMessage
from autogen_core import CancellationToken
from autogen_core.code_executor import CodeBlock
from autogen_ext.models.replay import ReplayChatCompletionClient
from autogen_ext.tools.code_execution import PythonCodeExecutionTool

from stockade import Policy
from stockade.integrations.autogen import StockadeCodeExecutor


def fenced(code: str, language: str = "python") -> str:
    return f"```{language}\n{code}```\n"


@pytest.fixture
async def executor():
    async with StockadeCodeExecutor(Policy.load("default").override(timeout=TIMEOUT)) as running:
        yield running


async def test_a_code_executor_agents_blocks_run_confined(
    executor: StockadeCodeExecutor, probe: Probe
) -> None:
    client = ReplayChatCompletionClient([fenced(probe.code) + fenced("echo from sh", "sh"), "done"])
    approved: list[str] = []

    def approve(request: ApprovalRequest) -> ApprovalResponse:  # the sandbox is the safeguard
        approved.append(request.code)
        return ApprovalResponse(approved=True, reason="runs in Stockade")

    agent = CodeExecutorAgent(
        "runner", code_executor=executor, model_client=client, approval_func=approve
    )
    events = [
        event
        async for event in agent.on_messages_stream(
            [TextMessage(content="where am I?", source="user")], CancellationToken()
        )
    ]
    [ran] = [event for event in events if isinstance(event, CodeExecutionEvent)]
    assert ran.result.exit_code == 0
    probe.check(ran.result.output)
    assert "from sh" in ran.result.output and len(approved) == 1
    assert events[-1].chat_message.content == "done"


async def test_blocks_stop_at_the_first_failure_with_a_shells_exit_code(
    executor: StockadeCodeExecutor,
) -> None:
    token = CancellationToken()
    blocks = [CodeBlock(SPIN, "python"), CodeBlock("print('never')", "python")]
    result = await executor.execute_code_blocks(blocks, token)
    assert result.exit_code == 124 and "status timeout" in result.output
    assert "never" not in result.output
    result = await executor.execute_code_blocks([CodeBlock("x", "cobol")], token)
    assert result.exit_code == 1 and "unsupported language 'cobol'" in result.output


async def test_cancelling_the_token_ends_the_run(executor: StockadeCodeExecutor) -> None:
    token = CancellationToken()
    run = asyncio.ensure_future(executor.execute_code_blocks([CodeBlock(SPIN, "python")], token))
    await asyncio.sleep(0.5)
    token.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, TIMEOUT - 1)  # before the limit would have ended it


async def test_the_python_code_execution_tool_runs_confined(
    executor: StockadeCodeExecutor, probe: Probe
) -> None:
    tool = PythonCodeExecutionTool(executor)
    result = await tool.run_json({"code": probe.code}, CancellationToken())
    assert result.success
    probe.check(result.output)


def test_the_executor_round_trips_as_a_component() -> None:
    policy = Policy.load("default").override(timeout=7, memory="300M")
    config = StockadeCodeExecutor(policy, timeout=2.5, pool=1).dump_component()
    loaded = StockadeCodeExecutor.load_component(config)
    assert config.provider == "stockade.integrations.autogen.StockadeCodeExecutor"
    assert (loaded.policy, loaded.timeout, loaded.pool) == (policy, 2.5, 1)

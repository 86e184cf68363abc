"""The Agent Framework shell executor: the framework's `ShellExecutor` protocol over a
workspace, and its `run_shell` tool in a framework `Agent` driven by a scripted chat client:
the commands run confined, files persist between them, they run at once, and the limit
holds."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("agent_framework_tools", reason="stockade[agent-framework] is not installed")

from adapters_testkit import Probe
from agent_framework import Agent, Content, Message
from agent_framework_tools.shell import ShellExecutionError, ShellExecutor
from test_agent_framework import ScriptedClient

from stockade import Sandbox
from stockade.integrations.agent_framework_shell import StockadeShellExecutor


def shell(command: str, call: str) -> Message:
    return Message(
        "assistant", [Content.from_function_call(call, "run_shell", arguments={"command": command})]
    )


async def test_the_protocol_files_persist_commands_run_at_once(confined: Sandbox) -> None:
    async with StockadeShellExecutor(confined) as executor:
        assert isinstance(executor, ShellExecutor)
        made = await executor.run("echo kept > notes.txt; echo to stderr >&2; exit 3")
        assert (made.stdout, made.stderr, made.exit_code) == ("", "to stderr\n", 3)
        assert (await executor.run("cat notes.txt")).stdout == "kept\n"
        both = await asyncio.gather(*(executor.run(f"sleep 1; echo {i}") for i in range(2)))
        assert [r.stdout for r in both] == ["0\n", "1\n"]
        late = await executor.run("sleep 60", timeout=1)
        assert late.timed_out and late.exit_code == 124
        assert "[status" not in late.stderr  # `timed_out` says it
        flood = await executor.run("yes", timeout=1)  # cut, then timed out: the cut is said
        assert flood.timed_out and flood.stderr.endswith("[output truncated at the output limit]")
    with pytest.raises(ShellExecutionError, match="gone"):
        executor.workspace = confined.workspace()
        executor.workspace.close()
        await executor.run("true")


async def test_an_agents_shell_runs_confined(confined: Sandbox, probe: Probe) -> None:
    command = f"cat > probe.py <<'EOF'\n{probe.code}EOF\npython3 probe.py"
    client = ScriptedClient([shell(command, "c1"), Message("assistant", ["done"])])
    async with StockadeShellExecutor(confined) as executor:
        agent = Agent(client=client, tools=[executor.as_function()])
        response = await agent.run("where am I?")
    [result] = [c for m in client.seen for c in m.contents if c.type == "function_result"]
    probe.check(result.result)
    assert "exit_code: 0" in result.result and response.text == "done"

"""Runtime: registration, delivery, and the explicit state that save/load round-trips."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from agents_testkit import Chatty, Say, Ticket, texts

from stockade.agents import (
    ChatAgent,
    CodeBlock,
    CodeExecutionAgent,
    ConfigError,
    GroupChat,
    Runtime,
    ScriptedModel,
    StateError,
    TextMessage,
)


def test_register_refuses_duplicates_and_shared_agents() -> None:
    agent = Say("a")
    runtime = Runtime([agent])
    with pytest.raises(ConfigError, match="already taken"):
        runtime.register(Say("a"))
    with pytest.raises(ConfigError, match="already taken"):
        runtime.register(Say("user"))
    with pytest.raises(ConfigError, match="another runtime"):
        Runtime([agent])


def test_an_agent_used_on_its_own_joins_a_chat_afterwards() -> None:
    agent = ChatAgent("helper", model=ScriptedModel(["alone", "in the chat"]))
    assert asyncio.run(agent.process_with_tools("hi")).content == "alone"
    assert agent.runtime is None  # the lone call went through a detached host, owned by none
    [lone] = agent.host.trace.of_kind("model_call")
    assert lone.agent == "helper" and agent.host.counters.model_calls == 1
    chat = GroupChat([agent], routing="role_based")
    result = asyncio.run(chat.run("hello"))
    assert result.termination == "completed"
    assert texts(result.messages) == ["hello", "in the chat"]
    assert agent.runtime is chat.runtime and agent.host is chat.runtime


class _Executor:
    """Stands in for the sandbox: every run prints "ran"."""

    def run_code(
        self, code: str, language: str = "python", *, files: Mapping[str, Any] | None = None
    ) -> Any:
        return SimpleNamespace(
            status="ok",
            exit_code=0,
            signal=None,
            stdout="ran\n",
            stderr="",
            stdout_truncated=False,
            stderr_truncated=False,
            wall_time=0.01,
            error=None,
        )


def test_a_runner_used_as_a_tool_on_its_own_can_be_registered_afterwards() -> None:
    runner = CodeExecutionAgent(sandbox=_Executor())
    outcome = asyncio.run(runner.as_tool().call('{"code": "print(1)"}'))
    assert outcome.ok and "ran" in outcome.content
    assert runner.runtime is None
    assert runner.host.counters.sandbox_runs == 1
    runtime = Runtime()
    runtime.register(runner)
    asyncio.run(runner.execute(CodeBlock(code="print(2)")))
    assert runner.runtime is runtime and runtime.counters.sandbox_runs == 1
    assert [e.code for e in runtime.trace.of_kind("sandbox_run")] == ["print(2)"]  # type: ignore[attr-defined]


def test_direct_delivery_until_idle() -> None:
    runtime = Runtime(
        [
            Say("a", ["to b"], verb="send_to", to="b"),
            Say("b", ["back to user"], verb="send_to", to="alice"),
        ]
    )
    runtime.external.add("alice")
    asyncio.run(runtime.send(TextMessage(content="start"), to="a", sender="alice"))
    answers = asyncio.run(runtime.run_until_idle())
    assert texts(answers) == ["back to user"]
    assert texts(runtime.conversation) == ["start", "to b", "back to user"]
    assert [m.sender for m in runtime.conversation] == ["alice", "a", "b"]
    assert runtime.conversation[1].parent_id == runtime.conversation[0].id
    assert runtime.counters.deliveries == 2


def test_state_is_explicit_and_round_trips_through_json() -> None:
    def build() -> GroupChat:
        return GroupChat([Chatty("p"), Chatty("q")], routing="round_robin", max_turns=4)

    chat = build()
    asyncio.run(chat.run(Ticket("T1", "billing", 1)))
    chat.runtime.memory.set("p", "mood", {"level": 3})
    saved = json.loads(json.dumps(chat.save_state()))

    restored = build()
    restored.load_state(saved)
    rt, original = restored.runtime, chat.runtime
    assert rt.conversation == original.conversation
    assert rt.counters == original.counters
    assert rt.agents["p"].state == {"count": 2}
    assert rt.memory.get("p", "mood") == {"level": 3}
    assert rt.memory.history("q") == original.memory.history("q")
    assert restored.state.turns == 4 and restored.state.messages == chat.state.messages
    assert restored.save_state()["chat"] == saved["chat"]


def test_load_state_checks_what_it_is_given() -> None:
    runtime = Runtime([Say("a")])
    with pytest.raises(StateError, match="version"):
        runtime.load_state({"agents": {}})
    other = Runtime([Say("zzz")]).save_state()
    with pytest.raises(StateError, match="lacks: zzz"):
        runtime.load_state(json.dumps(other))


def test_agents_do_not_see_each_others_memory() -> None:
    class Keeper(ChatAgent):
        async def on_message(self, message, ctx):  # type: ignore[no-untyped-def]
            ctx.memory.set("secret", self.name)
            self.state["seen"] = ctx.memory.keys()

    runtime = Runtime([Keeper("a"), Keeper("b")])
    asyncio.run(runtime.send(TextMessage(content="x"), to=["a", "b"]))
    asyncio.run(runtime.run_until_idle())
    assert runtime.memory.get("a", "secret") == "a"
    assert runtime.memory.get("b", "secret") == "b"
    assert [role for role, _ in runtime.memory.history("a")] == ["received"]

"""Runtime: registration, delivery, and the explicit state that save/load round-trips."""

from __future__ import annotations

import asyncio
import json

import pytest
from agents_testkit import Chatty, Say, Ticket, texts
from stockade.agents import ChatAgent, ConfigError, GroupChat, Runtime, StateError, TextMessage


def test_register_refuses_duplicates_and_shared_agents() -> None:
    agent = Say("a")
    runtime = Runtime([agent])
    with pytest.raises(ConfigError, match="already taken"):
        runtime.register(Say("a"))
    with pytest.raises(ConfigError, match="already taken"):
        runtime.register(Say("user"))
    with pytest.raises(ConfigError, match="another runtime"):
        Runtime([agent])


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

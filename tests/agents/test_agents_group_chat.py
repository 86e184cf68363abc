"""GroupChat: routing modes, termination reasons, the admin, handoff and resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from agents_testkit import Chatty, Echo, Say, Ticket, texts

from stockade.agents import (
    ChatAgent,
    ChatResult,
    ChatState,
    ConfigError,
    Context,
    GroupChat,
    Message,
    MessageValidationError,
    RoutingMode,
    StateError,
    TextMessage,
)
from stockade.agents.chat.group import RouteFunction
from stockade.agents.trace.events import RoutingEvent, TerminationEvent


def run(chat: GroupChat, first: Message | str, **kw: object) -> ChatResult:
    return asyncio.run(chat.run(first, **kw))  # type: ignore[arg-type]


def routed(result: ChatResult) -> list[list[str]]:
    return [e.targets for e in result.trace.of_kind("routing")]  # type: ignore[attr-defined]


# --- routing modes -------------------------------------------------------------------------


def test_round_robin_takes_turns_in_order() -> None:
    a, b, c = Say("a", ["a1", "a2"]), Say("b", ["b1"]), Say("c", ["c1", "STOP"])
    result = run(GroupChat([a, b, c], routing="round_robin", max_turns=10), "go")
    assert result.termination == "completed"
    assert routed(result) == [["a"], ["b"], ["c"], ["a"], ["b"], ["c"]]
    assert texts(result.messages) == ["go", "a1", "b1", "c1", "a2"]


def test_round_robin_passes_an_unanswered_message_on() -> None:
    quiet, talker = Say("quiet", []), Say("talker", ["STOP"])
    result = run(GroupChat([quiet, talker], routing="round_robin"), "anyone?")
    assert result.termination == "completed"
    assert [m.content for m in talker.seen] == ["anyone?"]  # type: ignore[attr-defined]


def test_role_based_follows_recipients_and_routing_field() -> None:
    front = Say("front", ["to billing"], verb="send_to", to="billing")
    billing = Say("billing", ["paid"])
    tech = Say("tech", ["rebooted"], role="technical")
    chat = GroupChat([front, billing, tech], routing="role_based")

    first = run(chat, "hello")  # from outside, no recipient: the entry agent
    assert routed(first) == [["front"], ["billing"], ["front"]]
    assert first.termination == "stalled"  # billing replied to front, which had nothing to add

    second = run(chat, Ticket("T1", "technical", 2))  # routing field → role
    assert second.termination == "completed"
    assert second.messages[-1].recipients == ("user",)
    assert [type(m).__name__ for m in tech.seen] == ["Ticket"]


def test_role_based_answer_to_the_user_completes() -> None:
    helper = Say("helper", ["here you go"])
    result = run(GroupChat([helper], routing="role_based"), "help")
    assert result.termination == "completed"
    assert "user" in result.detail


def test_a_word_to_the_user_does_not_drop_work_queued_for_an_agent() -> None:
    class Delegate(ChatAgent):
        async def on_message(self, message: Message, ctx: Context) -> None:
            if message.sender == "user":
                await ctx.reply("working on it")  # to the user
                await ctx.send_to("worker", "do X")

    worker = Say("worker", ["done"], verb="send_to", to="user")
    result = run(GroupChat([Delegate("boss"), worker], routing="role_based"), "help")
    assert [type(m).__name__ for m in worker.seen] == ["TextMessage"]  # it was not dropped
    assert result.termination == "completed" and texts(result.messages)[-1] == "done"


def test_an_answer_stands_when_the_work_sent_alongside_ends_in_silence() -> None:
    class Front(ChatAgent):
        async def on_message(self, message: Message, ctx: Context) -> None:
            await ctx.reply("done, and logged")
            await ctx.send_to("logger", "log it")

    logger = Say("logger", ["PASS"])  # does its job and says nothing
    result = run(GroupChat([Front("front"), logger], routing="role_based"), "help")
    assert result.termination == "completed" and len(logger.seen) == 1


def test_broadcast_delivers_to_everyone_but_the_sender() -> None:
    a, b, c = Say("a", ["from a"], verb="broadcast"), Say("b", []), Say("c", ["PASS", "STOP"])
    result = run(GroupChat([a, b, c], routing="broadcast"), "hi all")
    assert routed(result)[0] == ["a", "b", "c"]
    assert ["b", "c"] in routed(result)
    assert texts(b.seen) == ["hi all", "from a"]


@pytest.mark.parametrize("is_async", [False, True])
def test_custom_routing_function(is_async: bool) -> None:
    calls: list[tuple[int, str]] = []

    def pick(state: ChatState, message: Message) -> str | None:
        calls.append((state.turns, message.sender))
        return None if message.sender == "z" else "z"

    async def apick(state: ChatState, message: Message) -> str | None:
        return pick(state, message)

    router: RouteFunction = apick if is_async else pick
    z = Say("z", ["done"], verb="publish")
    result = run(GroupChat([Say("y"), z], routing=router), "start")
    assert routed(result) == [["z"], []]
    assert calls == [(0, "user"), (1, "z")]
    assert result.termination == "stalled"  # published to nobody, no admin


# --- termination ---------------------------------------------------------------------------


def test_max_turns_always_ends_the_chat() -> None:
    chat = GroupChat([Chatty("p"), Chatty("q")], routing="round_robin", max_turns=7)
    result = run(chat, "talk")
    assert result.termination == "max_turns"
    assert result.turns == 7
    assert len(result.messages) == 8
    last = result.trace.of_kind("termination")[-1]
    assert isinstance(last, TerminationEvent) and last.turns == 7


def test_loop_is_detected_before_max_turns() -> None:
    ping, pong = Echo("ping", "ping!", to="pong"), Echo("pong", "pong!", to="ping")
    chat = GroupChat([ping, pong], routing="role_based", max_turns=100, loop_repeats=3)
    result = run(chat, "start", to="ping")
    assert result.termination == "loop_detected"
    assert "ping → pong" in result.detail
    assert result.turns < 10


def test_single_agent_talking_to_itself_is_a_loop() -> None:
    echo = Echo("echo", "again", to="echo")
    result = run(GroupChat([echo], routing="role_based", max_turns=50), "go")
    assert result.termination == "loop_detected"
    assert result.turns <= 3


def test_stall_when_nobody_speaks() -> None:
    result = run(GroupChat([Say("a"), Say("b")], routing="round_robin", max_turns=50), "hello?")
    assert result.termination == "stalled"
    assert result.turns == 2  # each participant had one chance, no turns burned beyond


def test_admin_receives_the_stalled_chat() -> None:
    admin = Say("admin", ["STOP"])
    chat = GroupChat([Say("a"), Say("b")], routing="round_robin", admin_agent=admin)
    result = run(chat, "hello?")
    assert result.termination == "completed"
    assert texts(admin.seen) == ["hello?"]
    assert any(e.reason == "stalled" for e in result.trace.of_kind("routing"))  # type: ignore[attr-defined]


def test_admin_with_nothing_to_say_leaves_it_stalled() -> None:
    chat = GroupChat([Say("a")], routing="round_robin", admin_agent=Say("admin"))
    assert run(chat, "hello?").termination == "stalled"


class Overrider(ChatAgent):
    async def override_route(
        self, state: ChatState, message: Message, proposed: tuple[str, ...]
    ) -> Sequence[str] | None:
        return ["b"] if message.sender == "user" else None

    async def on_message(self, message: Message, ctx: Context) -> None:
        pass


def test_admin_overrides_a_routing_decision() -> None:
    a, b = Say("a", ["from a"]), Say("b", ["STOP"])
    result = run(GroupChat([a, b], routing="round_robin", admin_agent=Overrider("boss")), "x")
    first = result.trace.of_kind("routing")[0]
    assert isinstance(first, RoutingEvent)
    assert (first.proposed, first.targets, first.overridden_by) == (["a"], ["b"], "boss")
    assert a.seen == [] and texts(b.seen) == ["x"]
    assert result.termination == "completed"


def test_handler_error_ends_with_error() -> None:
    class Broken(ChatAgent):
        async def on_message(self, message: Message, ctx: Context) -> None:
            raise RuntimeError("kaput")

    result = run(GroupChat([Broken("broken")]), "hi")
    assert result.termination == "error"
    assert isinstance(result.error, RuntimeError)
    assert "broken raised RuntimeError: kaput" in result.detail
    assert result.trace.of_kind("error")


def test_invalid_message_from_an_agent_is_never_delivered() -> None:
    class Sloppy(ChatAgent):
        async def on_message(self, message: Message, ctx: Context) -> None:
            await ctx.send_to("other", Ticket("T9", "billing", "high"))  # type: ignore[arg-type]

    other = Say("other")
    result = run(GroupChat([Sloppy("sloppy"), other], routing="role_based"), "go")
    assert result.termination == "error"
    assert isinstance(result.error, MessageValidationError)
    assert result.error.field == "priority"
    assert other.seen == []
    assert len(result.messages) == 1


def test_custom_router_naming_an_unknown_agent_is_an_error() -> None:
    result = run(GroupChat([Say("a")], routing=lambda s, m: "ghost"), "go")
    assert result.termination == "error"
    assert "ghost" in result.detail


@pytest.mark.parametrize(
    ("agents", "routing", "max_turns", "match"),
    [
        ([], "round_robin", 5, "at least one agent"),
        (["a"], "random", 5, "unknown routing"),
        (["a"], "round_robin", 0, "max_turns"),
        (["a"], "round_robin", "3", "max_turns must be a whole number"),
        (["a"], "round_robin", 2.5, "max_turns must be a whole number"),
    ],
)
def test_bad_chat_setup(
    agents: list[str], routing: RoutingMode, max_turns: int, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        GroupChat([Say(n) for n in agents], routing=routing, max_turns=max_turns)


def test_duplicate_agent_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="already taken"):
        GroupChat([Say("a"), Say("a")])


# --- handoff -------------------------------------------------------------------------------


class Clerk(ChatAgent):
    """Hands off to a human the first time, then relays the human's answer."""

    async def on_message(self, message: Message, ctx: Context) -> None:
        if message.sender == "human":
            await ctx.send_to("user", f"the human says: {message.content}")  # type: ignore[attr-defined]
        else:
            await ctx.send_to("user", "one moment, asking a human")
            await ctx.handoff("refund above my limit")


def test_handoff_and_resume() -> None:
    chat = GroupChat([Clerk("clerk")], routing="role_based")
    result = run(chat, "refund 500 EUR")
    assert result.termination == "handoff"
    assert result.handoff is not None
    assert (result.handoff.agent, result.handoff.reason) == ("clerk", "refund above my limit")
    assert texts(result.handoff.pending) == ["one moment, asking a human"]

    resumed = asyncio.run(chat.resume("approved"))
    assert resumed.termination == "completed"
    assert texts(resumed.messages)[-1] == "the human says: approved"


def test_handoff_survives_save_and_load_in_a_new_chat() -> None:
    first = GroupChat([Clerk("clerk")], routing="role_based")
    assert run(first, "refund 500 EUR").termination == "handoff"
    saved = json.loads(json.dumps(first.save_state()))

    later = GroupChat([Clerk("clerk")], routing="role_based")
    later.load_state(saved)
    resumed = asyncio.run(later.resume(TextMessage(content="denied")))
    assert resumed.termination == "completed"
    assert texts(resumed.messages)[-1] == "the human says: denied"
    assert resumed.messages[0].id == saved["chat"]["messages"][0]["id"]


def test_resume_without_handoff_is_refused() -> None:
    with pytest.raises(ConfigError, match="nothing to resume"):
        asyncio.run(GroupChat([Say("a")]).resume("hello"))


def test_run_sync_wraps_the_coroutine() -> None:
    result = GroupChat([Say("a", ["STOP"])]).run_sync("hi")
    assert result.termination == "completed"


def test_a_bad_state_is_refused_and_changes_nothing() -> None:
    talker = Chatty("talker")
    chat = GroupChat([talker], routing="role_based", max_turns=1)
    run(chat, "one")
    saved = chat.save_state()
    before = (json.dumps(saved, sort_keys=True), dict(talker.state))
    broken = json.loads(json.dumps(saved))
    broken["runtime"]["agents"]["talker"]["state"] = {"count": 99}
    broken["runtime"]["conversation"].append({"type": "NoSuchMessage"})
    shapes = [json.loads(json.dumps(saved)) for _ in range(3)]
    shapes[0]["runtime"]["agents"]["talker"]["state"] = ["not", "a", "dict"]
    shapes[1]["runtime"]["external"] = 5
    shapes[2]["runtime"]["memory"] = []
    bad_chat = {"runtime": saved["runtime"], "chat": {"mode": "role_based"}}
    for bad in ({}, "text", {"runtime": broken["runtime"], "chat": saved["chat"]}, bad_chat,
                *shapes):  # fmt: skip
        with pytest.raises(StateError):
            chat.load_state(bad)  # type: ignore[arg-type]
        assert (json.dumps(chat.save_state(), sort_keys=True), dict(talker.state)) == before


def test_what_a_chat_is_given_is_checked_up_front() -> None:
    with pytest.raises(ConfigError, match="max_loop_cycle"):  # 0 turned loop detection off
        GroupChat([Say("a")], max_loop_cycle=0)
    with pytest.raises(ConfigError, match="a Message or a str"):
        run(GroupChat([Say("a")]), 42)  # type: ignore[arg-type]

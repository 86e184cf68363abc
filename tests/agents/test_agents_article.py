"""The article's spellings (AutoGen's 2025 rebuild, which the agent layer follows), typed as a
reader of the article types them, each doing what the article says it does."""

from __future__ import annotations

import asyncio

import pytest
from agents_testkit import Chatty, Say

from stockade.agents import (
    ChatAgent,
    CodeExecutionAgent,
    Context,
    GroupChat,
    Message,
    ModelResponse,
    ScriptedModel,
    TextMessage,
)


def test_msg_intent_on_any_message_and_routing_by_it() -> None:
    seen: list[str | None] = []

    class Triage(ChatAgent):
        async def on_message(self, msg: Message, ctx: Context) -> None:
            seen.append(msg.intent)
            if msg.intent is None and "charged" in getattr(msg, "content", ""):
                await ctx.publish(TextMessage(content=msg.content, intent="billing"))

    billing = Say("billing_agent", ["Refunded."] * 2, verb="send_to", to="user", role="billing")
    chat = GroupChat(agents=[Triage(name="triage"), billing], routing="role_based")

    result = asyncio.run(chat.run("I was charged twice"))
    assert seen == [None]  # every message has an intent: None unless its sender set one
    assert chat.state.speakers == ["triage", "billing_agent"]  # routed by the intent triage set
    assert result.messages[1].intent == "billing"
    assert result.termination == "completed"

    direct = asyncio.run(chat.run(TextMessage(content="charged twice", intent="billing")))
    assert chat.state.speakers[2:] == ["billing_agent"]  # past the entry agent, by its intent
    assert direct.messages[-1].content == "Refunded."  # type: ignore[attr-defined]


class EscalationManager(ChatAgent):
    """Takes what the other agents cannot resolve, and hands it to a human."""


def test_an_agent_made_with_human_handoff_hands_every_message_to_a_human() -> None:
    escalation = EscalationManager(name="escalation", human_handoff=True)
    front = Say("front", ["a refund of 900 EUR"], verb="send_to", to="escalation")
    chat = GroupChat(agents=[front, escalation], routing="role_based")

    result = asyncio.run(chat.run("refund me"))
    assert result.termination == "handoff"
    assert result.handoff is not None and result.handoff.agent == "escalation"
    assert "human_handoff" in result.handoff.reason
    assert result.trace.of_kind("model_call") == []  # the human decides, not a model

    resumed = asyncio.run(chat.resume("Approved: 900 EUR refunded."))
    assert resumed.termination == "completed"  # the human's reply went on to the user
    assert resumed.messages[-1].recipients == ("user",)
    assert resumed.messages[-1].content == "Approved: 900 EUR refunded."  # type: ignore[attr-defined]


def test_if_no_agent_resolves_within_5_turns_the_escalation_manager_takes_over() -> None:
    escalation = EscalationManager(name="escalation", human_handoff=True)
    chat = GroupChat(
        agents=[Chatty("billing_agent"), Chatty("tech_agent")],
        routing="round_robin",
        max_turns=5,
        admin_agent=escalation,
    )
    result = asyncio.run(chat.run("my invoice and my VPN are both broken"))
    assert result.termination == "handoff"
    speakers = ["billing_agent", "tech_agent", "billing_agent", "tech_agent", "billing_agent"]
    assert chat.state.speakers == [*speakers, "escalation"]
    assert result.turns == 6  # the five, and the escalation manager's final one
    final = result.trace.of_kind("routing")[-1]
    assert (final.targets, final.reason) == (["escalation"], "max_turns")  # type: ignore[attr-defined]
    assert result.handoff is not None and result.handoff.agent == "escalation"


def test_an_admin_that_does_not_hand_off_lets_max_turns_end_the_chat() -> None:
    admin = Say("supervisor", ["noted"], verb="send_to", to="user")
    chat = GroupChat([Chatty("a")], routing="round_robin", max_turns=2, admin_agent=admin)
    result = asyncio.run(chat.run("talk"))
    assert result.termination == "max_turns"
    assert "supervisor had the last" in result.detail
    assert [m.content for m in admin.seen] == ["a message 2"]  # type: ignore[attr-defined]


# --- Pattern 1: write, run in the sandbox, review, retry -----------------------------------

FENCE = "`" * 3
BUGGY = "def add(a, b):\n    return abs(a) + abs(b)\n\nassert add(-2, -3) == -5, 'add(-2, -3)'\n"
FIXED = "def add(a, b):\n    return a + b\n\nassert add(-2, -3) == -5, 'add(-2, -3)'\nprint('ok')\n"
drafts: dict[str, str] = {}


def write_code(filename: str, code: str) -> str:
    """Save a draft of a source file."""
    drafts[filename] = code
    return f"saved {filename}"


def run_tests(output: str) -> str:
    """Read a test run's output and say whether it passed."""
    return "passed" if output.strip().endswith("ok") else "failed"


def check_style(code: str) -> list[str]:
    """List style problems in the code."""
    return [f"line {n}: too long" for n, line in enumerate(code.splitlines(), 1) if len(line) > 99]


def specialist_model(*solutions: str) -> ScriptedModel:
    script: list[object] = []
    for code in solutions:
        script += [ModelResponse.calling("write_code", {"filename": "add.py", "code": code})]
        script += [f"Here it is:\n{FENCE}python\n{code}{FENCE}"]
    return ScriptedModel(script)


@pytest.mark.usefixtures("real_sandbox")
def test_pattern_1_retries_until_the_tests_pass_in_the_sandbox() -> None:
    specialist = ChatAgent(name="specialist", tools=[write_code])
    reviewer = ChatAgent(name="reviewer", tools=[run_tests, check_style])
    runner = CodeExecutionAgent(name="runner")
    specialist.model = specialist_model(BUGGY, FIXED)
    reviewer.model = ScriptedModel(
        [
            ModelResponse.calling("run_tests", {"output": "AssertionError: add(-2, -3)"}),
            "add(-2, -3) fails: drop the abs().",
            ModelResponse.calling("check_style", {"code": FIXED}),
            "The tests pass and the style is fine.",
        ]
    )
    chat = GroupChat(agents=[specialist, reviewer, runner], routing="role_based")
    try:
        result = asyncio.run(chat.run("Write add(a, b) with a test."))
    finally:
        runner.close()

    assert chat.state.speakers == ["specialist", "runner", "reviewer"] * 2
    runs = result.trace.of_kind("sandbox_run")
    assert [r.status for r in runs] == ["nonzero_exit", "ok"]  # type: ignore[attr-defined]
    assert "AssertionError" in result.messages[2].stderr  # type: ignore[attr-defined]
    assert [c.tool for c in result.trace.of_kind("tool_call")] == [
        "write_code", "run_tests", "write_code", "check_style"
    ]  # fmt: skip
    assert result.termination == "completed"
    assert result.messages[-1].sender == "reviewer"
    assert result.messages[-1].recipients == ("user",)
    assert drafts["add.py"] == FIXED


@pytest.mark.usefixtures("real_sandbox")
def test_pattern_1_stops_at_max_turns_when_the_tests_keep_failing() -> None:
    specialist = ChatAgent(name="specialist", tools=[write_code])
    reviewer = ChatAgent(name="reviewer", tools=[run_tests, check_style])
    runner = CodeExecutionAgent(name="runner")
    specialist.model = specialist_model(BUGGY, BUGGY.replace("abs(a)", "abs(a) * 1"))
    reviewer.model = ScriptedModel(["Still failing."] * 2)
    chat = GroupChat(agents=[specialist, reviewer, runner], routing="role_based", max_turns=5)
    try:
        result = asyncio.run(chat.run("Write add(a, b) with a test."))
    finally:
        runner.close()
    assert result.termination == "max_turns"
    assert chat.state.speakers == ["specialist", "runner", "reviewer", "specialist", "runner"]
    assert len(result.trace.of_kind("sandbox_run")) == 2

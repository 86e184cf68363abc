"""The article's spellings (AutoGen's 2025 rebuild, which the agent layer follows), typed as a
reader of the article types them, each doing what the article says it does."""

from __future__ import annotations

import asyncio

from agents_testkit import Say

from stockade.agents import ChatAgent, Context, GroupChat, Message, TextMessage


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

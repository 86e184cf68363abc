"""A support pipeline: triage, billing and technical agents, and an escalation manager.

Triage takes each typed `SupportTicket` and publishes it; role-based routing sends it by its
`issue_type` to the agent with that role (billing or technical). An agent that resolves the
ticket answers the user, which ends the chat. When no agent has resolved it by the chat's
last turn (`max_turns`), or nobody takes it at all (a stall), the escalation manager, the
chat's admin, takes over and hands the ticket to a human; the human's reply goes back to the
user through `chat.resume(...)`.

Runs offline (scripted billing model). Usage: python examples/support_pipeline.py [WORKDIR]
Then: python -m stockade.agents.trace WORKDIR/T-4.jsonl
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from stockade.agents import (
    ChatAgent,
    ChatResult,
    ChatState,
    Context,
    GroupChat,
    Message,
    ModelClient,
    ModelResponse,
    ScriptedModel,
)
from stockade.agents.messages import render


@dataclass
class SupportTicket(Message):
    ticket_id: str
    issue_type: str  # "billing" | "technical" | "account"
    description: str
    priority: int
    routing_field: ClassVar[str] = "issue_type"


@dataclass
class TechNote(Message):
    """What the technical agent found at one diagnostic step."""

    ticket_id: str
    step: int
    finding: str


KNOWN_FIXES = {
    "password": "I sent a password-reset link to the address on the account.",
    "vpn": "Update the VPN client to 5.2; 5.1 drops connections after sleep.",
}
DIAGNOSTICS = ["checked the service status: all green", "read the client logs: no errors"]


class Triage(ChatAgent):
    """Checks each ticket and publishes it: routing picks the agent by `issue_type`."""

    async def on_message(self, message: Message, ctx: Context) -> None:
        if isinstance(message, SupportTicket):
            await ctx.publish(message)


def refund_last_charge(ticket_id: str) -> dict[str, object]:
    """Refund the customer's last charge for the ticket's account."""
    return {"ticket_id": ticket_id, "refunded_eur": 42.0, "status": "refunded"}


class Billing(ChatAgent):
    """Resolves billing tickets with its model and tools, and answers the user."""

    async def on_message(self, message: Message, ctx: Context) -> None:
        answer = await self.process_with_tools(message)
        await ctx.send_to("user", answer)


class Technical(ChatAgent):
    """Answers known problems at once; otherwise runs one diagnostic step per turn."""

    async def on_message(self, message: Message, ctx: Context) -> None:
        ticket_id = getattr(message, "ticket_id", "?")
        if isinstance(message, SupportTicket):
            text = message.description.lower()
            fix = next((f for key, f in KNOWN_FIXES.items() if key in text), None)
            if fix is not None:
                await ctx.send_to("user", f"Ticket {ticket_id}: {fix}")
                return
        step = message.step + 1 if isinstance(message, TechNote) else 1
        finding = DIAGNOSTICS[(step - 1) % len(DIAGNOSTICS)]
        await ctx.send_to(self.name, TechNote(ticket_id=ticket_id, step=step, finding=finding))


class EscalationManager(ChatAgent):
    """The chat's admin: takes the chat's last turn when nobody resolved the ticket, and the
    tickets nobody takes; hands them to a human and passes the human's reply on."""

    def __init__(self, name: str, max_turns: int) -> None:
        super().__init__(name, role="escalation")
        self.max_turns = max_turns

    async def override_route(
        self, state: ChatState, message: Message, proposed: tuple[str, ...]
    ) -> Sequence[str] | None:
        last_turn = state.turns >= self.max_turns - 1
        if last_turn and proposed and self.name not in proposed:
            return [self.name]
        return None

    async def on_message(self, message: Message, ctx: Context) -> None:
        if message.sender == "human":
            reply = getattr(message, "content", "")
            await ctx.send_to("user", f"Update from our support team: {reply}")
            await ctx.stop("resolved by a human")
            return
        ticket = next(m for m in reversed(ctx.runtime.conversation) if isinstance(m, SupportTicket))
        ctx.memory.set(ticket.ticket_id, {"escalated": True, "last": type(message).__name__})
        await ctx.send_to("user", f"Ticket {ticket.ticket_id} is with a specialist now.")
        await ctx.handoff(f"ticket {ticket.ticket_id} ({ticket.issue_type}) is not resolved")


def scripted_billing_model() -> ModelClient:
    def refund(messages: list[dict[str, object]]) -> ModelResponse:
        ticket = json.loads(str(messages[-1]["content"]).split(": ", 1)[1])
        return ModelResponse.calling("refund_last_charge", {"ticket_id": ticket["ticket_id"]})

    return ScriptedModel([refund, "I refunded your last charge (42.00 EUR)."], name="scripted")


def build(
    max_turns: int = 4, trace: Path | None = None, billing_model: ModelClient | None = None
) -> GroupChat:
    """One chat per ticket: its agents, role-based routing, and the escalation admin."""
    agents = [
        Triage("triage"),
        Billing(
            "billing_agent",
            "You resolve billing tickets.",
            tools=[refund_last_charge],
            model=billing_model or scripted_billing_model(),
            role="billing",
        ),
        Technical("tech_agent", role="technical"),
    ]
    escalation = EscalationManager("escalation", max_turns)
    return GroupChat(
        agents, routing="role_based", max_turns=max_turns, admin_agent=escalation, trace=trace
    )


async def handle(
    ticket: SupportTicket, max_turns: int = 4, workdir: Path | None = None
) -> tuple[GroupChat, ChatResult]:
    trace = workdir / f"{ticket.ticket_id}.jsonl" if workdir else None
    chat = build(max_turns, trace)
    return chat, await chat.run(ticket, to="triage")


TICKETS = [
    SupportTicket("T-1", "billing", "I was charged twice this month", 2),
    SupportTicket("T-2", "technical", "I forgot my password", 3),
    SupportTicket("T-3", "account", "Please merge my two accounts", 1),
    SupportTicket("T-4", "technical", "The app freezes when I open a report", 1),
]
HUMAN_REPLIES = {
    "T-3": "I merged your two accounts into the older one.",
    "T-4": "Reports freeze with more than 10k rows; a fix ships Friday, use CSV until then.",
}


async def main(workdir: Path) -> None:
    for ticket in TICKETS:
        chat, result = await handle(ticket, workdir=workdir)
        handlers = " → ".join(dict.fromkeys(chat.state.speakers))
        print(f"{ticket.ticket_id} {ticket.issue_type}: {handlers}: {result.termination}")
        if result.termination == "handoff":
            done = await chat.resume(HUMAN_REPLIES[ticket.ticket_id])
            print(f"    human replied: {done.termination} - {render(done.messages[-1])}")
        else:
            answer = result.messages[-1]
            print(f"    {answer.sender}: {render(answer)}")


if __name__ == "__main__":
    # Only the traces go there, and the last line names the directory.
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="support-"))
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
    print(f"traces: python -m stockade.agents.trace {target / 'T-4.jsonl'}")

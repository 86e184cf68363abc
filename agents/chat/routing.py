"""Routing: who speaks next in a group chat. Each mode is a pure function of the chat's state
and the message to route, returning the names of the agents that receive it.

    "round_robin"  the participants take turns in order, whoever a message is addressed to
    "role_based"   the message's agent recipients; else the agents whose `role` (or name)
                   equals the message's `intent`, else the value of its type's
                   `routing_field`; else, for a message from outside, the first participant
                   (the chat's entry point)
    "broadcast"    every participant but the sender receives every message
    custom         any `(state, message) -> name | names | None`, sync or async

An empty answer means "nobody": the chat completes if the message is addressed to the user,
and stalls otherwise.

A role-based chat also addresses its agents' answers (`ctx.answer`, which the default
handlers use) by what they are, with `answer_to`: code goes to the code runners, a run's
result to the reviewers, a review back to the code's author. That is how a writer, a
reviewer and a runner take turns without naming one another.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..execution.code_blocks import ExecutionResult, extract_blocks
from ..messages import Message, from_dict, to_dict

RoutingMode = Literal["round_robin", "role_based", "broadcast"]
RouteResult = str | Sequence[str] | None
RouteFunction = Callable[["ChatState", Message], "RouteResult | Awaitable[RouteResult]"]


@dataclass
class ChatState:
    """Everything a group chat knows, in the open; routing functions read it."""

    agents: tuple[str, ...]
    """The participants, in round-robin order (the admin is not one unless listed)."""
    roles: dict[str, str]
    runners: tuple[str, ...] = ()
    """The participants that run the code they are sent (`CodeExecutionAgent`s)."""
    admin: str | None = None
    user: str = "user"
    mode: str = "round_robin"
    messages: list[Message] = field(default_factory=list)
    """Every message of the chat, the first one included."""
    pending: list[Message] = field(default_factory=list)
    """Messages sent but not yet routed."""
    speakers: list[str] = field(default_factory=list)
    """Who handled a message, turn after turn."""
    turns: int = 0
    passes: int = 0
    """Round robin: how many participants in a row had nothing to say."""
    signatures: list[str] = field(default_factory=list)
    """sender>targets>content fingerprints of routed messages, for loop detection."""
    forced: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Routing fixed in advance by message id (a human's reply, a stall given to the admin)."""
    stalls_handled: list[str] = field(default_factory=list)
    handoff: dict[str, str] | None = None
    termination: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k not in ("messages", "pending")}
        data["agents"] = list(self.agents)
        data["runners"] = list(self.runners)
        data["messages"] = [to_dict(m) for m in self.messages]
        data["pending"] = [to_dict(m) for m in self.pending]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatState:
        fields = dict(data)
        fields["agents"] = tuple(fields["agents"])
        fields["runners"] = tuple(fields.get("runners", ()))
        fields["messages"] = [from_dict(m) for m in data.get("messages", [])]
        fields["pending"] = [from_dict(m) for m in data.get("pending", [])]
        return cls(**fields)


def round_robin(state: ChatState, message: Message) -> tuple[str, ...]:
    previous = [s for s in state.speakers if s in state.agents]
    if not previous:
        return state.agents[:1]
    index = state.agents.index(previous[-1])
    return (state.agents[(index + 1) % len(state.agents)],)


def role_based(state: ChatState, message: Message) -> tuple[str, ...]:
    addressable = (*state.agents, *([state.admin] if state.admin else []))
    named = tuple(r for r in message.recipients if r in addressable)
    if named or message.recipients:
        return named
    # The message's own intent is the sender's choice for this one message, so it comes
    # before the routing field its type declares for every message.
    field_name = type(message).routing_field
    by_field = getattr(message, field_name, None) if field_name else None
    for value in (message.intent, by_field):
        matches = tuple(n for n in state.agents if value in (n, state.roles.get(n)))
        if value is not None and matches:
            return matches
    if message.sender not in addressable:
        return state.agents[:1]
    return ()


def answer_to(state: ChatState, handled: Message, sender: str, answer: Message) -> tuple[str, ...]:
    """Who `sender`'s answer to `handled` goes to in a role-based chat, by what it is:

    - a run's result: the reviewers (the participants that neither run code nor wrote the
      code), or, when there are none, the code's author;
    - a review of a run (by anyone but the code's author): back to the author when the run
      failed, so it tries again; to whoever started the conversation when it passed;
    - code, in a chat with a code runner: the runners;
    - else, as a reply, the sender of `handled` when it asked this agent by name, and whoever
      started the conversation when the chat routed it here (an author's answer to its own
      run's result, a published message).
    """
    by_id = {m.id: m for m in state.messages}
    runners = tuple(n for n in state.runners if n != sender)
    if isinstance(answer, ExecutionResult):
        reviewers = tuple(n for n in state.agents if n not in state.runners and n != handled.sender)
        return reviewers or (handled.sender,)
    code = by_id.get(handled.parent_id or "")
    if isinstance(handled, ExecutionResult) and code is not None and code.sender != sender:
        return (_requester(by_id, handled),) if handled.ok else (code.sender,)
    if runners and extract_blocks(answer, "python"):
        return runners
    if handled.recipients and not isinstance(handled, ExecutionResult):
        return (handled.sender,)
    return (_requester(by_id, handled),)


def _requester(by_id: dict[str, Message], message: Message) -> str:
    while message.parent_id in by_id:
        message = by_id[message.parent_id]
    return message.sender


def broadcast(state: ChatState, message: Message) -> tuple[str, ...]:
    return tuple(n for n in state.agents if n != message.sender)


ROUTERS: dict[str, RouteFunction] = {
    "round_robin": round_robin,
    "role_based": role_based,
    "broadcast": broadcast,
}


async def route(router: RouteFunction, state: ChatState, message: Message) -> tuple[str, ...]:
    """Call a router (built-in or custom, sync or async) and normalise its answer."""
    result = router(state, message)
    if inspect.isawaitable(result):
        result = await result
    return normalise(result)


def normalise(result: RouteResult) -> tuple[str, ...]:
    if result is None:
        return ()
    if isinstance(result, str):
        return (result,)
    return tuple(dict.fromkeys(result))

"""`GroupChat`: agents on one runtime, a routing mode, and the rules that end the chat.

One *turn* routes one message and runs the chosen agents' handlers on it, in order. The chat
ends, with a `ChatResult.termination` saying why, when:

    completed      an agent called `ctx.stop()`, or a message went to the user and no agent,
                   with nothing else queued for an agent
    max_turns      `max_turns` turns were taken in this `run` (or `resume`) call, and the
                   admin, if any, given the chat's last message for one final turn, did not
                   hand off (`handoff`) or stop (`completed`)
    loop_detected  the same sender→recipients→content cycle came round `loop_repeats` times
    stalled        no agent is willing to speak (and the admin, if any, had nothing either)
    handoff        an agent called `ctx.handoff(reason)`; `resume(human_reply)` carries on
    error          a handler or the routing raised; the exception is in `ChatResult.error`

The admin agent, if given, may override every routing decision (`override_route`), and
receives the chat's last message when it stalls or runs out of turns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from ..agent import ChatAgent
from ..errors import ConfigError, StateError, UnknownAgentError
from ..memory import Memory
from ..messages import Message, TextMessage, digest
from ..models.base import ContentFilter, ModelClient
from ..runtime.context import HUMAN
from ..runtime.runtime import Delivery, Runtime
from ..trace.events import HandoffEvent, RoutingEvent, TerminationEvent
from ..trace.log import Trace
from .routing import (
    ROUTERS,
    ChatState,
    RouteFunction,
    RoutingMode,
    answer_to,
    normalise,
    route,
)

TerminationReason = Literal[
    "completed", "max_turns", "loop_detected", "stalled", "handoff", "error"
]


@dataclass
class PendingHandoff:
    """Where a handed-off chat stands: who asked for a human, why, and what is queued."""

    agent: str
    reason: str
    pending: list[Message] = field(default_factory=list)


@dataclass
class ChatResult:
    termination: TerminationReason
    detail: str
    messages: list[Message]
    trace: Trace
    turns: int
    handoff: PendingHandoff | None = None
    error: Exception | None = None

    @property
    def last_message(self) -> Message | None:
        return self.messages[-1] if self.messages else None


class GroupChat:
    """A conversation among `agents`, routed by `routing`, bounded by `max_turns`."""

    def __init__(
        self,
        agents: Sequence[ChatAgent],
        routing: RoutingMode | RouteFunction = "round_robin",
        max_turns: int = 10,
        admin_agent: ChatAgent | None = None,
        *,
        runtime: Runtime | None = None,
        memory: Memory | str | Path | None = None,
        trace: Trace | str | Path | None = None,
        model: ModelClient | None = None,
        content_filter: ContentFilter | None = None,
        loop_repeats: int = 3,
        max_loop_cycle: int = 4,
        user: str = "user",
    ) -> None:
        self._check(agents, routing, max_turns, loop_repeats, max_loop_cycle)
        self.router: RouteFunction = ROUTERS[routing] if isinstance(routing, str) else routing
        self.max_turns = max_turns
        self.loop_repeats = loop_repeats
        self.max_loop_cycle = max_loop_cycle
        self.user = user
        self.runtime = runtime or Runtime(
            memory=memory,
            trace=trace,
            model=model,
            content_filter=content_filter,
            external=(user, HUMAN),
        )
        self.runtime.external |= {user, HUMAN}
        for agent in [*agents, *([admin_agent] if admin_agent else [])]:
            if self.runtime.agents.get(agent.name) is not agent:
                self.runtime.register(agent)
        self.admin = admin_agent
        self.state = ChatState(
            agents=tuple(a.name for a in agents),
            roles={a.name: a.role for a in agents},
            runners=tuple(a.name for a in agents if a.runs_code),
            admin=admin_agent.name if admin_agent else None,
            user=user,
            mode=routing if isinstance(routing, str) else getattr(routing, "__name__", "custom"),
        )

    @staticmethod
    def _check(
        agents: Sequence[ChatAgent], routing: Any, max_turns: int, repeats: int, cycle: int
    ) -> None:
        counts = {"max_turns": max_turns, "loop_repeats": repeats, "max_loop_cycle": cycle}
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be a whole number, not {value!r}")
        if cycle < 1:  # 0 would turn loop detection off, silently
            raise ConfigError("max_loop_cycle must be at least 1")
        if not agents:
            raise ConfigError("a group chat needs at least one agent")
        if isinstance(routing, str) and routing not in ROUTERS:
            raise ConfigError(f"unknown routing {routing!r}", hint=f"one of {sorted(ROUTERS)}")
        if not isinstance(routing, str) and not callable(routing):
            raise ConfigError("routing must be a mode name or a function (state, message)")
        if max_turns < 1 or repeats < 2:
            raise ConfigError("max_turns must be at least 1 and loop_repeats at least 2")

    @property
    def trace(self) -> Trace:
        return self.runtime.trace

    async def run(
        self, first_message: Message | str, *, to: str | Sequence[str] = ()
    ) -> ChatResult:
        """Send `first_message` from the user (to `to`, or wherever routing sends it) and run
        the chat until it ends."""
        message = (
            TextMessage(content=first_message) if isinstance(first_message, str) else first_message
        )
        if not isinstance(message, Message):
            raise ConfigError(f"a chat starts from a Message or a str, not {message!r:.100}")
        names = (to,) if isinstance(to, str) else tuple(to)
        sent = self.runtime.post(message, self.user, names, parent_id=message.parent_id)
        self.state.messages.append(sent)
        self.state.pending = [sent]
        self.state.passes, self.state.signatures = 0, []
        self.state.handoff = self.state.termination = None
        return await self._drive()

    async def resume(self, human_reply: Message | str) -> ChatResult:
        """Give the human's answer to the agent that handed off, and carry on."""
        handoff = self.state.handoff
        if handoff is None:
            raise ConfigError("nothing to resume: the chat did not end with a handoff")
        reply = TextMessage(content=human_reply) if isinstance(human_reply, str) else human_reply
        parent = self.state.messages[-1].id if self.state.messages else None
        sent = self.runtime.post(reply, HUMAN, (handoff["agent"],), parent_id=parent)
        self.trace.record(
            HandoffEvent(agent=handoff["agent"], reason="human replied", resumed=True)
        )
        self.state.messages.append(sent)
        self.state.pending.insert(0, sent)
        self.state.forced[sent.id] = {"targets": [handoff["agent"]], "reason": "human reply"}
        self.state.handoff = self.state.termination = None
        return await self._drive()

    def run_sync(self, first_message: Message | str, *, to: str | Sequence[str] = ()) -> ChatResult:
        return asyncio.run(self.run(first_message, to=to))

    def resume_sync(self, human_reply: Message | str) -> ChatResult:
        return asyncio.run(self.resume(human_reply))

    def save_state(self) -> dict[str, Any]:
        """The runtime's state and the chat's, JSON-ready; a handed-off chat can be saved
        here and resumed by another process."""
        return {"runtime": self.runtime.save_state(), "chat": self.state.to_dict()}

    def load_state(self, data: dict[str, Any]) -> None:
        """Restore `save_state()` output; a bad state raises `StateError` and changes nothing."""
        if not isinstance(data, dict) or not {"runtime", "chat"} <= set(data):
            raise StateError("not a chat state: expected the 'runtime' and 'chat' of save_state()")
        try:
            chat = ChatState.from_dict(data["chat"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"bad chat state: {type(exc).__name__}: {exc}") from None
        self.runtime.load_state(data["runtime"])
        self.state = chat

    async def _drive(self) -> ChatResult:
        budget = self.max_turns
        answered: Message | None = None  # an answer to the user, while work went on
        while True:
            if not self.state.pending:
                if answered is not None:  # the work it waited for is done: the answer stands
                    to = ", ".join(answered.recipients)
                    return self._end("completed", f"answer sent to {to}")
                if self._stall_to_admin(self.state.messages[-1]):
                    continue
                return self._end("stalled", "no agent is willing to speak")
            message = self.state.pending.pop(0)
            try:
                targets = await self._route(message)
            except Exception as exc:  # a custom router or admin is user code
                return self._end("error", f"routing failed: {type(exc).__name__}: {exc}", exc)
            if not targets:
                if message.recipients and not set(message.recipients) & set(self.runtime.agents):
                    if self.state.pending:  # a word to the user, and work still queued for agents
                        answered = message
                        continue
                    return self._end("completed", f"answer sent to {', '.join(message.recipients)}")
                if self._stall_to_admin(message):
                    continue
                kind = type(message).message_type
                return self._end("stalled", f"nobody takes the {kind} from {message.sender}")
            loop = self._loop(message, targets)
            if loop:
                return self._end("loop_detected", loop)
            if budget == 0:
                self.state.pending.insert(0, message)
                return await self._out_of_turns()
            budget -= 1
            ended = await self._turn(targets, message)
            if ended is not None:
                return ended

    async def _route(self, message: Message) -> tuple[str, ...]:
        forced = self.state.forced.pop(message.id, None)
        if forced is not None:
            targets = tuple(forced["targets"])
            self._record_route(message, targets, targets, None, forced["reason"])
            return targets
        proposed = await route(self.router, self.state, message)
        targets, by = proposed, None
        if self.admin is not None:
            override = await self.admin.override_route(self.state, message, proposed)
            if override is not None:
                targets, by = normalise(override), self.admin.name
        for name in targets:
            if name not in self.runtime.agents:
                raise UnknownAgentError(name, list(self.runtime.agents))
        self._record_route(message, proposed, targets, by, "")
        return targets

    def _record_route(
        self,
        message: Message,
        proposed: tuple[str, ...],
        targets: tuple[str, ...],
        by: str | None,
        reason: str,
    ) -> None:
        event = RoutingEvent(
            message_id=message.id,
            sender=message.sender,
            mode=self.state.mode,
            proposed=list(proposed),
            targets=list(targets),
            overridden_by=by,
            reason=reason,
        )
        self.trace.record(event)

    def _stall_to_admin(self, message: Message) -> bool:
        """Give a stalled chat's last message to the admin, once per message."""
        if self.admin is None or message.id in self.state.stalls_handled:
            return False
        self.state.stalls_handled.append(message.id)
        self.state.forced[message.id] = {"targets": [self.admin.name], "reason": "stalled"}
        self.state.pending.insert(0, message)
        return True

    async def _out_of_turns(self) -> ChatResult:
        """The chat has used its turns: the admin, if any, gets the chat's last message for
        one final turn (it may hand off or stop), then the chat ends."""
        spent = f"{self.max_turns} turns taken"
        if self.admin is None:
            return self._end("max_turns", spent)
        last, admin = self.state.messages[-1], (self.admin.name,)
        self._record_route(last, (), admin, None, "max_turns")
        ended = await self._turn(admin, last)
        return ended or self._end("max_turns", f"{spent}, and {self.admin.name} had the last")

    def _loop(self, message: Message, targets: tuple[str, ...]) -> str | None:
        """Record this routing's fingerprint; describe the cycle if one keeps repeating."""
        sigs = self.state.signatures
        sigs.append(f"{message.sender}>{','.join(targets)}>{digest(message)}")
        for length in range(1, self.max_loop_cycle + 1):
            window = length * self.loop_repeats
            if len(sigs) < window:
                break
            tail = sigs[-window:]
            if all(tail[i] == tail[i % length] for i in range(window)):
                path = " → ".join(s.split(">")[0] for s in tail[:length])
                return f"the cycle {path} (same content) repeated {self.loop_repeats} times"
        return None

    async def _turn(self, targets: tuple[str, ...], message: Message) -> ChatResult | None:
        self.state.turns += 1
        deliveries: list[Delivery] = []
        role_based = self.router is ROUTERS["role_based"]
        for name in targets:
            address = partial(answer_to, self.state, message, name) if role_based else None
            delivery = await self.runtime.deliver(name, message, address=address)
            deliveries.append(delivery)
            self.state.speakers.append(name)
            self.state.messages += delivery.outbox
            self.state.pending += delivery.outbox
            if delivery.error is not None:
                error = delivery.error
                return self._end("error", f"{name} raised {type(error).__name__}: {error}", error)
        return self._after_turn(deliveries, message)

    def _after_turn(self, deliveries: list[Delivery], message: Message) -> ChatResult | None:
        for d in deliveries:
            if d.handoff is not None:
                self.state.handoff = {"agent": d.agent, "reason": d.handoff}
                return self._end("handoff", f"{d.agent}: {d.handoff}")
        for d in deliveries:
            if d.stop is not None:
                return self._end("completed", f"{d.agent}: {d.stop}")
        spoke = any(d.outbox for d in deliveries)
        self.state.passes = 0 if spoke else self.state.passes + 1
        # Round robin lets each participant in turn take up an unanswered message before
        # calling the chat stalled.
        round_robin = self.router is ROUTERS["round_robin"]
        if not spoke and round_robin and self.state.passes < len(self.state.agents):
            self.state.pending.insert(0, message)
        return None

    def _end(
        self, reason: TerminationReason, detail: str, error: Exception | None = None
    ) -> ChatResult:
        self.state.termination = reason
        self.trace.record(TerminationEvent(reason=reason, detail=detail, turns=self.state.turns))
        handoff = None
        if reason == "handoff" and self.state.handoff is not None:
            handoff = PendingHandoff(
                self.state.handoff["agent"], self.state.handoff["reason"], list(self.state.pending)
            )
        return ChatResult(
            termination=reason,
            detail=detail,
            messages=list(self.state.messages),
            trace=self.trace,
            turns=self.state.turns,
            handoff=handoff,
            error=error,
        )

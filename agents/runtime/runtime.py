"""`Runtime`: registers agents, delivers messages, and holds all state in the open.

The state is what you can see on the object: `agents` (by name), `conversation` (every
message sent, validated and stamped), `memory` (SQLite), `counters`, and `trace` (every event).
`save_state()` returns it as JSON-ready data and `load_state()` puts it back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agent import ChatAgent
from ..errors import ConfigError, StateError, UnknownAgentError
from ..memory import Memory
from ..messages import Message, from_dict, serialisable, stamp, to_dict
from ..models.base import ContentFilter, ModelClient
from ..tools import as_tool
from ..trace.events import ErrorEvent, HandoffEvent, MessageEvent, SandboxRunEvent
from ..trace.log import Trace
from .context import HUMAN, Context, Counters

STATE_VERSION = 1


@dataclass
class Delivery:
    """What one handler call produced."""

    agent: str
    outbox: list[Message] = field(default_factory=list)
    handoff: str | None = None
    stop: str | None = None
    error: Exception | None = None


class Runtime:
    """Holds agents and their shared-nothing state; delivers messages one handler at a time.

    `external` names the parties outside the runtime (the user, a human): messages may be
    addressed to them, and they are never delivered to an agent.
    """

    def __init__(
        self,
        agents: Iterable[ChatAgent] = (),
        *,
        memory: Memory | str | Path | None = None,
        trace: Trace | str | Path | None = None,
        model: ModelClient | None = None,
        content_filter: ContentFilter | None = None,
        external: Iterable[str] = ("user", HUMAN),
        tracer_provider: object | None = None,
    ) -> None:
        self.agents: dict[str, ChatAgent] = {}
        self.external: set[str] = set(external)
        self.conversation: list[Message] = []
        self.pending: list[Message] = []
        self.memory = memory if isinstance(memory, Memory) else Memory(memory or ":memory:")
        if isinstance(trace, Trace) and tracer_provider is not None:
            raise ConfigError(
                "tracer_provider is the Trace's when a Trace is passed",
                hint="Trace(path, tracer_provider=...), or pass the path instead",
            )
        self.trace = (
            trace if isinstance(trace, Trace) else Trace(trace, tracer_provider=tracer_provider)
        )
        self.model = model
        self.content_filter = content_filter
        self.counters = Counters()
        for agent in agents:
            self.register(agent)

    def register(self, agent: ChatAgent) -> ChatAgent:
        """Add an agent; its name must be unique and its tools must have schemas."""
        if agent.name in self.agents or agent.name in self.external:
            raise ConfigError(f"the name {agent.name!r} is already taken in this runtime")
        if agent.runtime is not None and agent.runtime is not self:
            raise ConfigError(
                f"agent {agent.name!r} already belongs to another runtime",
                hint="create a new agent object per runtime; agents never share state",
            )
        for item in agent.tools:
            as_tool(item)  # raises ToolDefinitionError now rather than mid-chat
        agent.runtime = self
        self.agents[agent.name] = agent
        return agent

    def agent(self, name: str) -> ChatAgent:
        try:
            return self.agents[name]
        except KeyError:
            raise UnknownAgentError(name, list(self.agents)) from None

    def check_name(self, name: str) -> None:
        if name not in self.agents and name not in self.external:
            raise UnknownAgentError(name, [*self.agents, *self.external])

    def post(
        self,
        message: Message,
        sender: str,
        recipients: Sequence[str],
        *,
        parent_id: str | None = None,
    ) -> Message:
        """Validate, stamp and record a message; returns the copy that will be delivered."""
        for name in recipients:
            self.check_name(name)
        sent = stamp(message, sender=sender, recipients=tuple(recipients), parent_id=parent_id)
        # Recorded in the trace first: a message that cannot be serialised is refused before
        # it joins the conversation, whose every later save_state() it would break.
        self.trace.record(MessageEvent(message=serialisable(sent)))
        self.conversation.append(sent)
        self.counters.messages += 1
        if sender in self.agents:
            self.memory.record(sender, "sent", sent)
        return sent

    async def send(
        self, message: Message, to: str | Sequence[str] = (), *, sender: str = "user"
    ) -> Message:
        """Bring a message in from outside and queue it for `run_until_idle`."""
        if sender in self.agents:
            raise ConfigError(f"{sender!r} is an agent; agents send through their Context")
        self.external.add(sender)
        names = (to,) if isinstance(to, str) else tuple(to)
        sent = self.post(message, sender, names, parent_id=message.parent_id)
        self.pending.append(sent)
        return sent

    async def deliver(
        self,
        name: str,
        message: Message,
        *,
        address: Callable[[Message], Sequence[str]] | None = None,
    ) -> Delivery:
        """Run one agent's handler on one message; a handler's exception becomes data.
        `address` is how the chat addresses the handler's `ctx.answer`, if it does."""
        agent = self.agent(name)
        ctx = Context(self, agent, message, address)
        self.counters.deliveries += 1
        self.memory.record(name, "received", message)
        try:
            with self.trace.spans.agent(name):
                await agent.on_message(message, ctx)
        # Handlers are user code: a failure ends the chat with reason `error`, and the
        # runtime keeps its state so the caller can inspect or save it.
        except Exception as exc:
            self.counters.errors += 1
            self.trace.record(ErrorEvent(agent=name, error_type=type(exc).__name__, error=str(exc)))
            return Delivery(name, ctx.outbox, error=exc)
        handoff = ctx.handoff_reason
        if handoff is None and agent.human_handoff and message.sender != HUMAN:
            handoff = f"{name} hands every message to a human (human_handoff=True)"
        if handoff is not None:
            self.trace.record(HandoffEvent(agent=name, reason=handoff))
        return Delivery(name, ctx.outbox, handoff, ctx.stop_reason)

    async def run_until_idle(self, max_deliveries: int = 100) -> list[Message]:
        """Deliver queued messages to their agent recipients until none are left; returns
        the messages addressed to outside parties. Stops at `max_deliveries`."""
        answers: list[Message] = []
        delivered = 0
        while self.pending and delivered < max_deliveries:
            message = self.pending.pop(0)
            for name in message.recipients:
                if name in self.external:
                    answers.append(message)
                    continue
                delivery = await self.deliver(name, message)
                delivered += 1
                self.pending += delivery.outbox
                if delivery.error is not None:
                    raise delivery.error
        return answers

    def record_sandbox_run(self, agent: str, language: str, code: str, result: Any) -> None:
        """Trace one run of code in the sandbox; `result` is a `stockade.Result` (or alike)."""
        self.trace.record(SandboxRunEvent.from_result(agent, language, code, result))
        self.counters.sandbox_runs += 1

    def save_state(self) -> dict[str, Any]:
        """Everything needed to carry on later, as JSON-ready data."""
        return {
            "version": STATE_VERSION,
            "agents": {name: agent.save_state() for name, agent in self.agents.items()},
            "external": sorted(self.external),
            "conversation": [to_dict(m) for m in self.conversation],
            "pending": [to_dict(m) for m in self.pending],
            "counters": dataclasses.asdict(self.counters),
            "memory": self.memory.dump(),
        }

    def load_state(self, state: dict[str, Any] | str) -> None:
        """Restore `save_state()` output (or its JSON text) into this runtime, whose agents
        must carry the same names."""
        data = json.loads(state) if isinstance(state, str) else state
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise StateError(f"not a runtime state of version {STATE_VERSION}")
        agents = data.get("agents", {})
        if not isinstance(agents, dict) or not all(
            isinstance(a, dict) and isinstance(a.get("state", {}), dict) for a in agents.values()
        ):
            raise StateError("the state's 'agents' must map each name to {'state': {...}}")
        external = data.get("external", [])
        shapes = (
            (external, list, "external"),
            (data.get("conversation", []), list, "conversation"),
            (data.get("pending", []), list, "pending"),
            (data.get("memory", {}), dict, "memory"),
            (data.get("counters", {}), dict, "counters"),
        )
        for value, kind, key in shapes:
            if not isinstance(value, kind):
                raise StateError(f"the state's {key!r} must be a {kind.__name__}")
        if not all(isinstance(name, str) for name in external):
            raise StateError("the state's 'external' must list names")
        unknown = sorted(set(agents) - set(self.agents))
        if unknown:
            raise StateError(f"the state has agents this runtime lacks: {', '.join(unknown)}")
        # Everything is read before anything changes: a bad state leaves the runtime as it was.
        conversation = [from_dict(m) for m in data.get("conversation", [])]
        pending = [from_dict(m) for m in data.get("pending", [])]
        try:
            counters = Counters(**data.get("counters", {}))
        except TypeError as exc:
            raise StateError(f"bad counters in the state: {exc}") from None
        self.memory.restore(data.get("memory", {}))  # one transaction: all or nothing
        for name, agent_state in agents.items():
            self.agents[name].load_state(agent_state)
        self.external |= set(external)
        self.conversation, self.pending, self.counters = conversation, pending, counters

"""What an agent sees of the runtime: `Host`, what its own calls go through, and `Context`,
what one handler call may do.

`ChatAgent` depends on `Host` alone, so the agent module never imports the runtime: a
`Runtime` is one host, and an agent used on its own makes a detached one for itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..messages import Message, as_message

if TYPE_CHECKING:
    from ..agent import ChatAgent
    from ..memory import AgentMemory, Memory
    from ..models.base import ContentFilter, ModelClient
    from ..trace.events import ModelCallEvent
    from ..trace.log import Trace
    from .runtime import Runtime

HUMAN = "human"
"""The outside party a chat is handed to (`ctx.handoff`), whose replies `resume` brings in."""


@dataclass
class Counters:
    """Running totals, saved with the state."""

    messages: int = 0
    deliveries: int = 0
    model_calls: int = 0
    model_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    sandbox_runs: int = 0
    errors: int = 0

    def count_model_call(self, event: ModelCallEvent) -> None:
        self.model_calls += 1
        self.model_errors += event.error is not None
        self.prompt_tokens += event.prompt_tokens
        self.completion_tokens += event.completion_tokens


class Host(Protocol):
    """What an agent's own calls (model, tools, sandbox runs) use: the defaults it falls back
    on, where it records, and its history. `Runtime` is one."""

    model: ModelClient | None
    """The model of agents that have none of their own."""
    content_filter: ContentFilter | None
    """The filter of agents that have none of their own."""
    memory: Memory
    trace: Trace
    counters: Counters

    def record_sandbox_run(self, agent: str, language: str, code: str, result: Any) -> None: ...


class Context:
    """What one handler call may do: send, reply, answer, broadcast, hand off to a human, stop.

    Every verb is a coroutine (`await ctx.reply(...)`). A send validates the message at once:
    a bad one raises `MessageValidationError` here, in the sender, and is never delivered.
    """

    def __init__(
        self,
        runtime: Runtime,
        agent: ChatAgent,
        message: Message,
        address: Callable[[Message], Sequence[str]] | None = None,
    ) -> None:
        self.runtime = runtime
        self.agent = agent
        self.message = message
        self._address = address
        """How the chat addresses an answer, when it does (role-based routing)."""
        self.outbox: list[Message] = []
        self.handoff_reason: str | None = None
        self.stop_reason: str | None = None

    @property
    def memory(self) -> AgentMemory:
        """This agent's persistent key/value store and history."""
        return self.runtime.memory.for_agent(self.agent.name)

    @property
    def trace(self) -> Trace:
        return self.runtime.trace

    @property
    def root(self) -> Message:
        """The outside message the one being handled descends from: its conversation's start."""
        by_id = {m.id: m for m in self.runtime.conversation}
        message = self.message
        while message.parent_id in by_id:
            message = by_id[message.parent_id]
        return message

    async def send_to(self, to: str | Sequence[str], message: Message | str) -> Message:
        """Validate `message` and send it to the named agent(s); returns the sent copy."""
        names = (to,) if isinstance(to, str) else tuple(to)
        sent = self.runtime.post(
            as_message(message), self.agent.name, names, parent_id=self.message.id
        )
        self.outbox.append(sent)
        return sent

    async def publish(self, message: Message | str) -> Message:
        """Send to the chat with no recipient: the chat's routing decides who gets it (under
        role-based routing, by the message's routing field)."""
        return await self.send_to((), message)

    async def reply(self, message: Message | str) -> Message:
        """Send to whoever sent the message being handled."""
        return await self.send_to(self.message.sender, message)

    async def answer(self, message: Message | str) -> Message:
        """Answer the message being handled. In a role-based group chat the chat addresses
        the answer by what it is: code to the chat's code runners, a run's result to its
        reviewers, a review back to the code's author (see `chat.routing.answer_to`);
        elsewhere the answer goes to the sender, as `reply` does."""
        answer = as_message(message)
        to = tuple(self._address(answer)) if self._address is not None else ()
        return await self.send_to(to or self.message.sender, answer)

    async def broadcast(self, message: Message | str) -> Message:
        """Send to every other registered agent."""
        others = [n for n in self.runtime.agents if n != self.agent.name]
        return await self.send_to(others, message)

    async def handoff(self, reason: str) -> None:
        """Hand the conversation to a human: the chat ends with `handoff` after this handler,
        keeping its pending messages, and `GroupChat.resume(reply)` carries on."""
        self.handoff_reason = reason

    async def stop(self, reason: str = "done") -> None:
        """End the chat as `completed` after this handler."""
        self.stop_reason = reason

"""Small scripted agents for routing and termination tests (no model needed)."""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from stockade.agents import ChatAgent, Context, Message, TextMessage
from stockade.agents.messages import _registry


@dataclass
class Ticket(Message):
    ticket_id: str
    issue_type: str
    priority: int
    routing_field: ClassVar[str] = "issue_type"


class Say(ChatAgent):
    """Says its lines in order, one per message received (via `verb`), then stays silent."""

    def __init__(
        self,
        name: str,
        lines: Sequence[str] = (),
        *,
        verb: str = "reply",
        to: str | None = None,
        role: str | None = None,
    ) -> None:
        super().__init__(name, role=role)
        self.lines = list(lines)
        self.verb = verb
        self.to = to
        self.seen: list[Message] = []

    async def on_message(self, message: Message, ctx: Context) -> None:
        self.seen.append(message)
        if not self.lines:
            return
        line = self.lines.pop(0)
        if line == "PASS":
            return
        if line == "STOP":
            await ctx.stop("finished")
        elif line == "HANDOFF":
            await ctx.handoff("needs a human decision")
        elif self.verb == "send_to":
            await ctx.send_to(self.to or "", line)
        else:
            await getattr(ctx, self.verb)(line)


class Echo(ChatAgent):
    """Replies with the same text every time: a loop waiting to happen."""

    def __init__(self, name: str, text: str, to: str | None = None) -> None:
        super().__init__(name)
        self.text = text
        self.to = to

    async def on_message(self, message: Message, ctx: Context) -> None:
        await ctx.send_to(self.to or message.sender, TextMessage(content=self.text))


class Chatty(ChatAgent):
    """Always says something new, so only max_turns can end it."""

    async def on_message(self, message: Message, ctx: Context) -> None:
        count = int(self.state.get("count", 0)) + 1
        self.state["count"] = count
        await ctx.reply(f"{self.name} message {count}")


def texts(messages: Sequence[Message]) -> list[str]:
    return [getattr(m, "content", type(m).__name__) for m in messages]


@contextlib.contextmanager
def example_module(path: Path, name: str, source: str | None = None) -> Iterator[types.ModuleType]:
    """Run an example file (or `source`, code taken from `path`) as module `name`. The message
    types it declares are forgotten afterwards, so two examples may each declare their own
    `SupportTicket`."""
    saved = dict(_registry)
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look the defining module up there
    try:
        code = path.read_text() if source is None else source
        exec(compile(code, str(path), "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules[name]
        _registry.clear()
        _registry.update(saved)

"""`ChatAgent`, the agent class users subclass.

An agent is a plain Python object: its name, prompt, tools and model, plus `state` (a
JSON-ready dict that `Runtime.save_state` captures). It never holds another agent's data;
everything it sends goes through its `Context`, which validates and records it. Its own calls
go through a `Host` (see `runtime.context`): the runtime that registered it or, used on its
own, a detached host it makes for itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .errors import (
    ConfigError,
    ContentBlockedError,
    ModelResponseError,
    ToolDefinitionError,
)
from .memory import Memory, Role
from .messages import Message, TextMessage, as_message, render
from .models.base import (
    ChatMessages,
    ContentFilter,
    Direction,
    ModelClient,
    ModelResponse,
    ToolCall,
    filter_input,
    filter_output,
)
from .runtime.context import HUMAN, Counters
from .tools import Tool, ToolFunction, ToolOutcome, as_tool
from .trace.events import FilterEvent, ModelCallEvent, SandboxRunEvent, ToolCallEvent
from .trace.log import Trace

if TYPE_CHECKING:
    from .chat.routing import ChatState
    from .runtime.context import Context, Host

T = TypeVar("T")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ChatAgent:
    """An agent backed by a model and tools. Override `on_message`; the default handler
    answers every message with `process_with_tools` through `ctx.answer` (to its sender, or,
    in a role-based chat, to whoever acts on the answer next).

    `role` (default: the name) is what role-based routing matches a message's intent and
    routing field against. The admin of a group chat may also override `override_route`.
    With `human_handoff=True` the agent hands the chat to a human whenever a message reaches
    it (after its handler, as `ctx.handoff` does); its default handler then asks no model,
    and passes the human's reply on to whoever started the conversation, which ends the chat.
    """

    runs_code: ClassVar[bool] = False
    """Whether the agent runs the code it is sent: a role-based chat sends code to those that do."""

    def __init__(
        self,
        name: str,
        system_prompt: str = "",
        tools: Sequence[Tool | ToolFunction] = (),
        model: ModelClient | None = None,
        *,
        role: str | None = None,
        description: str = "",
        content_filter: ContentFilter | None = None,
        max_tool_steps: int = 8,
        history_limit: int = 20,
        human_handoff: bool = False,
    ) -> None:
        if not NAME_PATTERN.match(name):
            raise ConfigError(f"agent name {name!r} is invalid", hint="use 1-64 of [A-Za-z0-9_.-]")
        self.name = name
        self.system_prompt = system_prompt
        self.tools: list[Tool | ToolFunction] = list(tools)
        names = [as_tool(t).name for t in self.tools]  # each checked here, not at its first call
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ToolDefinitionError(twice[0], f"agent {name!r} has two tools of that name")
        self.model = model
        self.role = role or name
        self.description = description
        self.content_filter = content_filter
        self.max_tool_steps = max_tool_steps
        self.history_limit = history_limit
        self.human_handoff = human_handoff
        self.state: dict[str, Any] = {}
        self.runtime: Host | None = None
        """The runtime that registered this agent; None until one does."""
        self._detached: _DetachedHost | None = None

    async def on_message(self, message: Message, ctx: Context) -> None:
        if not self.human_handoff:
            await ctx.answer(await self.process_with_tools(message))
        elif message.sender == HUMAN:  # the human took over: their word ends the chat
            await ctx.send_to(ctx.root.sender, message)
            await ctx.stop("a human answered")

    async def override_route(
        self, state: ChatState, message: Message, proposed: tuple[str, ...]
    ) -> Sequence[str] | None:
        """As a chat's admin: return agent names to replace the routing decision, or None to
        accept it. Called for every decision."""
        return None

    def save_state(self) -> dict[str, Any]:
        return {"state": self.state}

    def load_state(self, data: dict[str, Any]) -> None:
        self.state = dict(data.get("state", {}))

    def tool_schemas(self) -> list[dict[str, Any]]:
        return [as_tool(t).schema() for t in self.tools]

    async def process_with_tools(self, message: Message | str) -> TextMessage:
        """Run the model with this agent's tools until it answers in text; returns the answer.

        Each tool call's result (or its error) goes back to the model. Raises `ModelError` or
        `ContentBlockedError` when the model cannot be used.
        """
        message = as_message(message)
        model = self._model()
        tools = {t.name: t for t in map(as_tool, self.tools)}
        schemas = [t.schema() for t in tools.values()]
        prompt = self._prompt(message)
        for _ in range(self.max_tool_steps):
            response = await self._ask(model, prompt, schemas)
            prompt.append(response.to_openai())
            if not response.tool_calls:
                return TextMessage(content=response.content or "")
            for call in response.tool_calls:
                outcome = await self._run_tool(tools, call)
                prompt.append({"role": "tool", "tool_call_id": call.id, "content": outcome.content})
        raise ModelResponseError(
            f"{self.name}: the model was still calling tools after {self.max_tool_steps} steps"
        )

    @property
    def host(self) -> Host:
        """What this agent's calls are traced, counted and remembered in: its runtime, or, used
        on its own (a notebook, a unit test), a detached host of its own, made on first use."""
        if self.runtime is not None:
            return self.runtime
        if self._detached is None:
            self._detached = _DetachedHost()
        return self._detached

    def _model(self) -> ModelClient:
        model = self.model or self.host.model
        if model is None:
            raise ConfigError(
                f"agent {self.name!r} has no model",
                hint="pass model=ScriptedModel([...]) or OpenAIModel(...), or Runtime(model=...)",
            )
        return model

    def _prompt(self, message: Message) -> ChatMessages:
        prompt: ChatMessages = []
        if self.system_prompt:
            prompt.append({"role": "system", "content": self.system_prompt})
        past = self.host.memory.history(self.name, limit=self.history_limit + 1)
        prompt += [_turn(role, m) for role, m in past if m.id != message.id][-self.history_limit :]
        prompt.append(_turn("received", message))
        return prompt

    async def _ask(
        self, model: ModelClient, prompt: ChatMessages, schemas: list[dict[str, Any]]
    ) -> ModelResponse:
        """One audited model call: input filter, the call, output filter, trace, counters."""
        host = self.host
        hook = self.content_filter or host.content_filter
        sent = self._filtered(lambda: filter_input(prompt, hook), "input")
        event = ModelCallEvent(
            agent=self.name, model=model.name, messages=sent, tools=[_name(s) for s in schemas]
        )
        start = time.monotonic()
        spans = host.trace.spans
        with spans.model_call(model) as span:
            try:
                response = await model.complete(sent, schemas)
                response = self._filtered(lambda: filter_output(response, hook), "output")
            except Exception as exc:  # recorded for the audit log, then raised unchanged
                event.error = f"{type(exc).__name__}: {exc}"
                raise
            else:
                _fill(event, response)
                spans.finish_model_call(span, event)
            finally:
                event.latency = time.monotonic() - start
                host.trace.record(event)
                host.counters.count_model_call(event)
        return response

    def _filtered(self, run: Callable[[], tuple[T, bool]], direction: Direction) -> T:
        trace = self.host.trace
        try:
            value, changed = run()
        except ContentBlockedError as exc:
            blocked = FilterEvent(
                agent=self.name, direction=direction, action="blocked", reason=exc.reason
            )
            trace.record(blocked)
            raise
        if changed:
            trace.record(FilterEvent(agent=self.name, direction=direction, action="redacted"))
        return value

    async def _run_tool(self, tools: dict[str, Tool], call: ToolCall) -> ToolOutcome:
        start = time.monotonic()
        host = self.host
        spans = host.trace.spans
        with spans.tool(self.name, call.name, call.id) as span:
            tool = tools.get(call.name)
            if tool is None:
                known = ", ".join(tools) or "none"
                outcome = ToolOutcome(
                    f"Error: no tool named {call.name!r}; tools: {known}", ok=False
                )
            else:
                outcome = await tool.call(call.arguments)
            if not outcome.ok:
                spans.fail_tool(span, outcome.content)
        host.trace.record(
            ToolCallEvent(
                agent=self.name,
                tool=call.name,
                call_id=call.id,
                arguments=call.arguments,
                result=outcome.content,
                ok=outcome.ok,
                latency=time.monotonic() - start,
            )
        )
        host.counters.tool_calls += 1
        host.counters.tool_errors += not outcome.ok
        return outcome


@dataclass
class _DetachedHost:
    """The host of an agent used outside any runtime: a trace, counters and an in-memory store
    of its own, so its calls are still traced and counted. Registered nowhere, so the agent
    stays free to join a runtime."""

    model: ModelClient | None = None
    content_filter: ContentFilter | None = None
    memory: Memory = field(default_factory=Memory)
    trace: Trace = field(default_factory=Trace)
    counters: Counters = field(default_factory=Counters)

    def record_sandbox_run(self, agent: str, language: str, code: str, result: Any) -> None:
        self.trace.record(SandboxRunEvent.from_result(agent, language, code, result))
        self.counters.sandbox_runs += 1


def _turn(role: Role, message: Message) -> dict[str, Any]:
    if role == "sent":
        return {"role": "assistant", "content": render(message)}
    turn: dict[str, Any] = {"role": "user", "content": render(message)}
    sender = re.sub(r"[^A-Za-z0-9_-]", "_", message.sender)
    if sender:
        turn["name"] = sender
    return turn


def _name(schema: dict[str, Any]) -> str:
    return str(schema.get("function", {}).get("name", "?"))


def _fill(event: ModelCallEvent, response: ModelResponse) -> None:
    event.content = response.content
    event.tool_calls = [c.to_openai() for c in response.tool_calls]
    event.finish_reason = response.finish_reason
    event.prompt_tokens = response.usage.prompt_tokens
    event.completion_tokens = response.usage.completion_tokens
    event.attempts = response.attempts
    event.model = response.model or event.model

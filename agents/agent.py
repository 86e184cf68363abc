"""`ChatAgent`, the agent class users subclass, and `Context`, what a handler acts through.

An agent is a plain Python object: its name, prompt, tools and model, plus `state` (a
JSON-ready dict that `Runtime.save_state` captures). It never holds another agent's data;
everything it sends goes through its `Context`, which validates and records it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import (
    ConfigError,
    ContentBlockedError,
    ModelResponseError,
    ToolDefinitionError,
)
from .memory import AgentMemory, Role
from .messages import Message, TextMessage, render
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
from .tools import Tool, ToolFunction, ToolOutcome, as_tool
from .trace import FilterEvent, ModelCallEvent, ToolCallEvent, Trace

if TYPE_CHECKING:
    from .chat.routing import ChatState
    from .runtime.runtime import Runtime

T = TypeVar("T")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Context:
    """What one handler call may do: send, reply, broadcast, hand off to a human, stop.

    Every verb is a coroutine (`await ctx.reply(...)`). A send validates the message at once:
    a bad one raises `MessageValidationError` here, in the sender, and is never delivered.
    """

    def __init__(self, runtime: Runtime, agent: ChatAgent, message: Message) -> None:
        self.runtime = runtime
        self.agent = agent
        self.message = message
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

    async def send_to(self, to: str | Sequence[str], message: Message | str) -> Message:
        """Validate `message` and send it to the named agent(s); returns the sent copy."""
        names = (to,) if isinstance(to, str) else tuple(to)
        sent = self.runtime.post(
            _as_message(message), self.agent.name, names, parent_id=self.message.id
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


def _as_message(message: Message | str) -> Message:
    return TextMessage(content=message) if isinstance(message, str) else message


class ChatAgent:
    """An agent backed by a model and tools. Override `on_message`; the default handler
    answers every message with `process_with_tools` and replies to its sender.

    `role` (default: the name) is what role-based routing matches a message's routing field
    against. The admin of a group chat may also override `override_route`.
    """

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
        self.state: dict[str, Any] = {}
        self.runtime: Runtime | None = None

    async def on_message(self, message: Message, ctx: Context) -> None:
        await ctx.reply(await self.process_with_tools(message))

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
        message = _as_message(message)
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

    def _bound(self) -> Runtime:
        if self.runtime is None:
            # Used on its own (a notebook, a unit test): give the agent a private runtime so
            # its calls are still traced and counted.
            from .runtime.runtime import Runtime

            Runtime([self])
        assert self.runtime is not None
        return self.runtime

    def _model(self) -> ModelClient:
        model = self.model or self._bound().model
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
        past = self._bound().memory.history(self.name, limit=self.history_limit + 1)
        prompt += [_turn(role, m) for role, m in past if m.id != message.id][-self.history_limit :]
        prompt.append(_turn("received", message))
        return prompt

    async def _ask(
        self, model: ModelClient, prompt: ChatMessages, schemas: list[dict[str, Any]]
    ) -> ModelResponse:
        """One audited model call: input filter, the call, output filter, trace, counters."""
        runtime = self._bound()
        hook = self.content_filter or runtime.content_filter
        sent = self._filtered(lambda: filter_input(prompt, hook), "input")
        event = ModelCallEvent(
            agent=self.name, model=model.name, messages=sent, tools=[_name(s) for s in schemas]
        )
        start = time.monotonic()
        try:
            response = await model.complete(sent, schemas)
            response = self._filtered(lambda: filter_output(response, hook), "output")
        except Exception as exc:  # recorded for the audit log, then raised unchanged
            event.error = f"{type(exc).__name__}: {exc}"
            raise
        else:
            _fill(event, response)
        finally:
            event.latency = time.monotonic() - start
            runtime.trace.record(event)
            runtime.counters.count_model_call(event)
        return response

    def _filtered(self, run: Callable[[], tuple[T, bool]], direction: Direction) -> T:
        trace = self._bound().trace
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
        tool = tools.get(call.name)
        if tool is None:
            known = ", ".join(tools) or "none"
            outcome = ToolOutcome(f"Error: no tool named {call.name!r}; tools: {known}", ok=False)
        else:
            outcome = await tool.call(call.arguments)
        runtime = self._bound()
        runtime.trace.record(
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
        runtime.counters.tool_calls += 1
        runtime.counters.tool_errors += not outcome.ok
        return outcome


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

"""Model clients: the one-method seam `ModelClient.complete`, what it returns, and the filter.

A model client takes OpenAI-format chat messages and tool schemas and returns a
`ModelResponse`. `OpenAIModel` (in `models.openai`) speaks to OpenAI, Azure OpenAI or a local
server; `ScriptedModel` (in `models.scripted`) plays back a list of responses for tests and
offline runs.

A content filter is a callable `(text, direction) -> str | None` run on every text going to
the model (`"input"`) and coming back (`"output"`): it returns the text, possibly redacted,
or `None` (or raises `ContentBlockedError`) to block the call.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import ContentBlockedError
from ..messages import new_id

Direction = Literal["input", "output"]
ContentFilter = Callable[[str, Direction], "str | None"]
ChatMessages = list[dict[str, Any]]


@dataclass(frozen=True)
class ToolCall:
    """A model's request to call a tool; `arguments` is the raw JSON text the model wrote."""

    name: str
    arguments: str = "{}"
    id: str = field(default_factory=lambda: "call_" + new_id()[:12])

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ModelResponse:
    """What a model said: text, tool calls, or both."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: str | None = None
    model: str = ""
    attempts: int = 1

    @classmethod
    def calling(cls, name: str, arguments: dict[str, Any] | str | None = None) -> ModelResponse:
        """A response that calls one tool; `arguments` may be raw text, to script bad JSON."""
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
        return cls(tool_calls=(ToolCall(name, raw),), finish_reason="tool_calls")

    def to_openai(self) -> dict[str, Any]:
        """The assistant message to append to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        return message


@runtime_checkable
class ModelClient(Protocol):
    """Anything that can complete a chat; `name` is what traces show."""

    name: str

    async def complete(
        self, messages: ChatMessages, tools: Sequence[dict[str, Any]] = ()
    ) -> ModelResponse: ...


def filter_input(messages: ChatMessages, hook: ContentFilter | None) -> tuple[ChatMessages, bool]:
    """Run the filter over every text in the prompt; returns the prompt and whether it changed."""
    if hook is None:
        return messages, False
    out, changed = [], False
    for message in messages:
        text = message.get("content")
        if isinstance(text, str):
            cleaned = _apply(hook, text, "input")
            changed |= cleaned != text
            message = {**message, "content": cleaned}
        out.append(message)
    return out, changed


def filter_output(
    response: ModelResponse, hook: ContentFilter | None
) -> tuple[ModelResponse, bool]:
    """Run the filter over the response's text and tool-call arguments."""
    if hook is None:
        return response, False
    content = None if response.content is None else _apply(hook, response.content, "output")
    calls = tuple(
        dataclasses.replace(c, arguments=_apply(hook, c.arguments, "output"))
        for c in response.tool_calls
    )
    changed = content != response.content or calls != response.tool_calls
    return dataclasses.replace(response, content=content, tool_calls=calls), changed


def _apply(hook: ContentFilter, text: str, direction: Direction) -> str:
    result = hook(text, direction)
    if result is None:
        raise ContentBlockedError(direction, "the content filter refused the text")
    return result

"""`ScriptedModel`: the `ModelClient` double, for tests and offline runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ScriptExhaustedError
from .base import ChatMessages, ModelResponse, Usage

ScriptItem = str | ModelResponse | BaseException | Callable[[ChatMessages], ModelResponse]


class ScriptedModel:
    """Plays back `responses` in order: a text, a `ModelResponse` (tool calls included), an
    exception to raise, or a function of the prompt. Every call is kept in `calls`."""

    provider = "scripted"  # gen_ai.provider.name in the spans (trace/spans.py)

    def __init__(self, responses: Sequence[ScriptItem], *, name: str = "scripted") -> None:
        self.responses = list(responses)
        self.name = name
        self.calls: list[tuple[ChatMessages, list[dict[str, Any]]]] = []

    @property
    def remaining(self) -> int:
        return len(self.responses) - len(self.calls)

    async def complete(
        self, messages: ChatMessages, tools: Sequence[dict[str, Any]] = ()
    ) -> ModelResponse:
        if self.remaining <= 0:
            raise ScriptExhaustedError(
                f"{self.name}: all {len(self.responses)} scripted responses were used"
            )
        self.calls.append(([dict(m) for m in messages], list(tools)))
        item = self.responses[len(self.calls) - 1]
        if isinstance(item, BaseException):
            raise item
        response = item(messages) if callable(item) else item
        if isinstance(response, str):
            response = ModelResponse(content=response, finish_reason="stop")
        return dataclasses.replace(
            response, model=response.model or self.name, usage=_count(messages, response)
        )


def _count(messages: ChatMessages, response: ModelResponse) -> Usage:
    # Scripted runs have no tokenizer; words are a stable, deterministic stand-in.
    if response.usage != Usage():
        return response.usage
    prompt = sum(len(str(m.get("content") or "").split()) for m in messages)
    return Usage(prompt, len((response.content or "").split()))

"""Tools: Python functions offered to a model through OpenAI tool calling.

The JSON schema of a tool's parameters is derived from the function's type hints with
pydantic (use `Annotated[int, Field(description=...)]` to describe a parameter); the
description is the docstring's first paragraph. Both come from `stockade.HostTool`, which
also describes the host tools sandboxed code calls: one function serves a model and code.
Arguments from the model are validated before the function runs. Whatever goes wrong in a
call (bad JSON, a wrong argument, the function raising) becomes the tool's result, an error
text for the model to read, so a faulty tool call never crashes the chat.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic_core

from stockade import HostTool, PolicyError

from .errors import ToolDefinitionError
from .messages import without_lone_surrogates

ToolFunction = Callable[..., Any]


@dataclass(frozen=True)
class ToolOutcome:
    """What a call gave back to the model, and whether it succeeded."""

    content: str
    ok: bool


_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Tool:
    """A function with its name, description and argument model."""

    def __init__(self, function: ToolFunction, *, name: str | None = None) -> None:
        if not callable(function):
            raise ToolDefinitionError(repr(function)[:100], "a tool is a function or a Tool")
        self.function = function
        self.name = name or function.__name__
        if not _TOOL_NAME.fullmatch(self.name):  # what the OpenAI API accepts
            raise ToolDefinitionError(self.name, "a tool's name is 1-64 of [A-Za-z0-9_-]")
        try:
            self.host_tool = HostTool(function, name=self.name)
        except PolicyError as exc:
            raise ToolDefinitionError(
                self.name, exc.reason.removeprefix(f"{self.name}: ")
            ) from None
        self.description = self.host_tool.description
        self.arguments = self.host_tool.arguments

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry for this tool."""
        parameters = self.arguments.model_json_schema()
        parameters.pop("title", None)
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": parameters,
            },
        }

    def validate(self, raw_arguments: str) -> dict[str, Any]:
        """Parse and validate the model's JSON arguments; raises `ValueError` with the reason."""
        try:
            data = json.loads(raw_arguments or "{}")
        except (json.JSONDecodeError, TypeError) as exc:  # TypeError: not even a string
            raise ValueError(f"arguments are not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("arguments must be a JSON object")
        return self.host_tool.validate(data)

    async def call(self, raw_arguments: str) -> ToolOutcome:
        """Validate and run; every failure is reported as the outcome, never raised."""
        try:
            kwargs = self.validate(raw_arguments)
        except ValueError as exc:
            return ToolOutcome(f"Error: invalid arguments for {self.name}: {exc}", ok=False)
        try:
            result = self.function(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        # A tool is user code: whatever it raises is news for the model, not for the chat.
        except Exception as exc:
            return ToolOutcome(f"Error: {self.name} raised {type(exc).__name__}: {exc}", ok=False)
        try:
            return ToolOutcome(_as_text(result), ok=True)
        except Exception as exc:  # undecodable bytes, a circular structure, ...
            why = f"{type(exc).__name__}: {exc}"
            return ToolOutcome(f"Error: {self.name} returned what cannot be text: {why}", ok=False)


def as_tool(item: Tool | ToolFunction) -> Tool:
    return item if isinstance(item, Tool) else Tool(item)


def tool(function: ToolFunction | None = None, *, name: str | None = None) -> Any:
    """Decorator form: `@tool` or `@tool(name="...")` turns a function into a `Tool`."""
    if function is None:
        return lambda f: Tool(f, name=name)
    return Tool(function, name=name)


def _as_text(result: Any) -> str:
    if not isinstance(result, str):
        result = pydantic_core.to_jsonable_python(result, fallback=repr)
        result = json.dumps(result, ensure_ascii=False)
    return without_lone_surrogates(result)

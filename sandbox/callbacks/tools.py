"""Host tools: functions on the host that sandboxed code may call (`tools=[...]`).

`HostTool` is one function with its name, description and argument model: a pydantic model
made from its type hints, which validates the JSON arguments before the function runs. The
agent layer's tools are built on it too. `Toolset` is the tools one run was given, by name,
and what the guest module (`guest/stockade_tools.py`) is told of them.

Pure: nothing here touches a run; `broker.py` serves the calls.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import keyword
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pydantic

from stockade.errors import PolicyError

ToolFunction = Callable[..., Any]
# What `tools=` takes: functions (or HostTools), or a mapping of names to functions.
Tools = Iterable["ToolFunction | HostTool"] | Mapping[str, ToolFunction]
MAX_TOOLS = 256
_MAX_DOC = 2000  # characters of each tool's description the code sees in its __doc__
RESERVED = frozenset({"ToolError", "ToolArgumentError", "SPEC_VARIABLE", "FD_VARIABLE"})


class HostTool:
    """A host function offered to sandboxed code: `name` (the function's own by default),
    `description` (its docstring's first paragraph), `arguments` (a pydantic model of its
    parameters, from its type hints; extra arguments are refused). Raises `PolicyError`
    (field "tools") when the function cannot be described: a parameter without a type hint,
    `*args` or `**kwargs`, a type pydantic has no schema for."""

    def __init__(self, function: ToolFunction, *, name: str | None = None) -> None:
        if not callable(function):
            raise PolicyError("tools", f"{function!r:.100}: a tool is a function")
        self.function = function
        self.name = name or getattr(function, "__name__", "")
        if not isinstance(self.name, str) or not self.name:
            raise PolicyError("tools", f"{function!r:.100}: give the tool a name")
        doc = inspect.getdoc(function) or ""
        self.description = doc.split("\n\n", 1)[0].strip()
        self.signature = inspect.signature(function)
        self.arguments = _argument_model(function, self.name, self.signature)
        self.is_async = inspect.iscoroutinefunction(function)

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the parameters."""
        parameters = self.arguments.model_json_schema()
        parameters.pop("title", None)
        return parameters

    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Validate arguments by name; raises `ValueError` with the reason."""
        try:
            checked = self.arguments.model_validate(data)
        except pydantic.ValidationError as exc:
            raise ValueError(_explain(exc)) from None
        return {name: getattr(checked, name) for name in type(checked).model_fields}

    def bind(self, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Positional and keyword arguments -> arguments by name, as a call would bind them;
        raises `ValueError` (too many, unknown, given twice)."""
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        return dict(bound.arguments)

    def call(self, arguments: Mapping[str, Any]) -> Any:
        """Call the function with validated arguments (positional-only ones by position)."""
        positional = [
            arguments[p.name]
            for p in self.signature.parameters.values()
            if p.kind is p.POSITIONAL_ONLY and p.name in arguments
        ]
        named = {k: v for k, v in arguments.items() if k not in _positional_only(self.signature)}
        return self.function(*positional, **named)


class Toolset:
    """The tools of one run, by name: what the code may call, and nothing else."""

    def __init__(self, tools: Mapping[str, HostTool], payload: int) -> None:
        self.tools = dict(tools)
        self.payload = payload

    def spec(self) -> str:
        """What the guest module is told (an environment variable): each tool's name and
        the doc its function shows, and the size bound of a call."""
        items = []
        for tool in self.tools.values():
            text = f"{tool.name}{_shown(tool.function)}"
            if tool.description:
                text += f"\n\n{tool.description[:_MAX_DOC]}"
            items.append({"name": tool.name, "doc": text})
        return json.dumps({"tools": items, "payload": self.payload})


def plan_tools(tools: Iterable[Any] | Mapping[str, ToolFunction], payload: int) -> Toolset:
    """The `tools=` argument (functions or `HostTool`s, or a mapping of names to them), each
    checked: a name the code can call (an identifier, not a keyword, not private, not one of
    the module's own), unique; at most MAX_TOOLS."""
    if isinstance(tools, str | bytes) or not isinstance(tools, Iterable | Mapping):
        raise PolicyError("tools", "expected a list of functions, or a mapping of names to them")
    pairs = tools.items() if isinstance(tools, Mapping) else ((None, t) for t in tools)
    made: dict[str, HostTool] = {}
    for given, item in pairs:
        name = given or _name_of(item)
        check_name(name)
        tool = item if isinstance(item, HostTool) and name == item.name else None
        tool = tool or HostTool(getattr(item, "function", item), name=name)
        if tool.name in made:
            raise PolicyError("tools", f"two tools are named {tool.name!r}")
        made[tool.name] = tool
    if len(made) > MAX_TOOLS:
        raise PolicyError("tools", f"{len(made)} tools: at most {MAX_TOOLS}")
    return Toolset(made, payload)


def check_name(name: str) -> None:
    """A name the code can call: an identifier, not a keyword, not private, not the module's."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise PolicyError("tools", f"{name!r}: a tool's name must be a Python identifier")
    if name.startswith("_") or name in RESERVED:
        raise PolicyError(
            "tools", f"{name!r}: names starting with _ and {sorted(RESERVED)} are taken"
        )


def _name_of(item: Any) -> str:
    # An object with `name` and `function` (a HostTool, the agent layer's Tool) keeps its name.
    name = getattr(item, "name", None)
    if isinstance(name, str) and hasattr(item, "function"):
        return name
    name = getattr(item, "__name__", None)
    if not callable(item) or not isinstance(name, str):
        raise PolicyError("tools", f"{item!r:.100}: a tool is a function")
    return name


def _positional_only(signature: inspect.Signature) -> set[str]:
    return {p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_ONLY}


def _shown(function: ToolFunction) -> str:
    # The hints resolved (they are strings under `from __future__ import annotations`).
    with contextlib.suppress(Exception):
        return str(inspect.signature(function, eval_str=True))
    return str(inspect.signature(function))


def _argument_model(
    function: ToolFunction, name: str, signature: inspect.Signature
) -> type[pydantic.BaseModel]:
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except (NameError, TypeError) as exc:
        raise PolicyError("tools", f"{name}: its type hints cannot be resolved: {exc}") from None
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise PolicyError("tools", f"{name}: *{param.name} cannot be described to a model")
        if param.name not in hints:
            raise PolicyError("tools", f"{name}: parameter {param.name!r} has no type hint")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    try:
        model: type[pydantic.BaseModel] = pydantic.create_model(
            f"{name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
        )
        model.model_json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as exc:
        raise PolicyError("tools", f"{name}: no JSON schema for its parameters: {exc}") from None
    return model


def _explain(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)

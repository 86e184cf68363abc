"""A framework's tool as a Stockade host tool: a function whose signature comes from the tool's
JSON schema, so the session's tool channel checks a call's arguments (pydantic, from the type
hints) before the framework's own tool runs on the host.

Frameworks describe a tool's parameters as JSON schema properties; a host tool is described
by its function's signature. `host_function` makes that signature: each property typed from
its JSON type (any other schema: `Any`, and the framework's tool validates it), the optional
ones defaulting to None.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any

_TYPES: dict[str, Any] = {
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": float,
    "array": list,
    "object": dict,
}


def host_function(
    name: str,
    description: str,
    properties: Mapping[str, Mapping[str, Any]],
    required: Collection[str],
    call: Callable[..., Any],
) -> Callable[..., Any]:
    """A function named `name` whose parameters are `properties` (`required` ones first in
    order they were given, when positions can tell them apart), calling `call(**arguments)`
    (sync or async, as `call` is)."""
    parameters = _parameters(properties, required)
    if inspect.iscoroutinefunction(call):

        async def function(**arguments: Any) -> Any:
            return await call(**arguments)

    else:

        def function(**arguments: Any) -> Any:
            return call(**arguments)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = description
    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in parameters}
    return function


def _parameters(
    properties: Mapping[str, Mapping[str, Any]], required: Collection[str]
) -> list[inspect.Parameter]:
    """Positional-or-keyword, as code may call a tool either way; keyword-only when a required
    parameter follows an optional one (positions could not say which is which)."""
    optional = [name not in required for name in properties]
    ordered = optional == sorted(optional)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if ordered else inspect.Parameter.KEYWORD_ONLY
    return [_parameter(name, schema, kind, name in required) for name, schema in properties.items()]


def _parameter(name: str, schema: Mapping[str, Any], kind: Any, needed: bool) -> inspect.Parameter:
    given = schema.get("type")
    annotation = _TYPES.get(given, Any) if isinstance(given, str) else Any
    if not needed and annotation is not Any:
        annotation = annotation | None
    default = inspect.Parameter.empty if needed else None
    return inspect.Parameter(name, kind, default=default, annotation=annotation)

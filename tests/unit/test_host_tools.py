"""Host tools, without a sandbox: how functions become tools (names, type hints, the schema
the guest module is told), the policy's bounds, and the guest module's copies of the host's
constants."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pytest
from pydantic import Field

from stockade import HostTool, Policy, PolicyError
from stockade.callbacks import broker
from stockade.callbacks.guest import stockade_tools
from stockade.callbacks.tools import plan_tools
from stockade.warm.guest import zygote


def lookup(account_id: int, region: Annotated[str, Field(description="where")] = "eu") -> dict:
    """Find an account.

    More text the model does not need."""
    return {"id": account_id, "region": region}


def test_a_function_becomes_a_tool() -> None:
    tool = HostTool(lookup)
    assert (tool.name, tool.description, tool.is_async) == ("lookup", "Find an account.", False)
    assert tool.schema()["properties"]["region"]["description"] == "where"
    assert tool.validate(tool.bind([3], {})) == {"account_id": 3, "region": "eu"}
    assert tool.validate({"account_id": "4"}) == {"account_id": 4, "region": "eu"}
    with pytest.raises(ValueError, match="account_id: Input should be a valid integer"):
        tool.validate({"account_id": "four"})
    with pytest.raises(ValueError, match="colour: Extra inputs are not permitted"):
        tool.validate({"account_id": 1, "colour": "red"})
    with pytest.raises(ValueError, match="multiple values"):
        tool.bind([1], {"account_id": 2})


def test_positional_only_parameters_are_passed_by_position() -> None:
    def divide(a: int, b: int, /) -> float:
        return a / b

    tool = HostTool(divide)
    assert tool.call(tool.validate(tool.bind([6, 3], {}))) == 2.0


@pytest.mark.parametrize(
    ("tools", "reason"),
    [
        ([lambda x: x], "'<lambda>': a tool's name must be a Python identifier"),
        ({"class": lookup}, "'class': a tool's name must be a Python identifier"),
        ({"_hidden": lookup}, "names starting with _"),
        ({"ToolError": lookup}, "are taken"),
        ([lookup, lookup], "two tools are named 'lookup'"),
        ("lookup", "expected a list of functions"),
        ([42], "a tool is a function"),
    ],
)
def test_tools_that_cannot_be_given_are_refused(tools: Any, reason: str) -> None:
    with pytest.raises(PolicyError, match=r"^tools: ") as caught:
        plan_tools(tools, 1 << 20)
    assert reason in caught.value.reason


def test_functions_that_cannot_be_described_are_refused() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def star(*values: int) -> int:
        return 0

    for function, reason in ((untyped, "parameter 'x' has no type hint"), (star, "*values")):
        with pytest.raises(PolicyError, match="tools") as caught:
            HostTool(function)
        assert reason in caught.value.reason


def test_the_guest_is_told_names_docs_and_the_bound() -> None:
    spec = json.loads(plan_tools({"find": lookup}, 4096).spec())
    assert spec["payload"] == 4096
    assert spec["tools"] == [
        {
            "name": "find",
            "doc": "find(account_id: int, region: typing.Annotated[str, FieldInfo("
            "annotation=NoneType, required=True, description='where')] = 'eu') -> dict"
            "\n\nFind an account.",
        }
    ]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("tool_calls", -1, "greater than or equal to 0"),
        ("tool_payload", "512", "greater than or equal to 1024"),
        ("tool_time", 0, "greater than 0"),
        ("tool_time", "forever", "expected a duration"),
    ],
)
def test_the_policy_bounds_are_validated(key: str, value: object, reason: str) -> None:
    with pytest.raises(PolicyError, match=f"^limits.{key}: .*{reason}"):
        Policy.from_dict({"limits": {key: value}})


def test_the_default_bounds() -> None:
    limits = Policy.load("default").limits
    assert (limits.tool_calls, limits.tool_payload, limits.tool_time) == (10_000, 1 << 20, 10.0)


def test_the_guest_modules_constants_are_the_hosts() -> None:
    assert stockade_tools._HEADER.format == broker.HEADER.format
    assert (zygote.TOOLS_SPEC, zygote.TOOLS_FD) == (broker.SPEC_VARIABLE, broker.FD_VARIABLE)
    assert broker.GUEST_SOURCE.startswith('"""Host tools, inside the sandbox')

"""Tools: JSON schema from type hints, argument validation, errors given back to the model."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal

import pydantic
import pytest

from stockade.agents import (
    ChatAgent,
    ModelResponse,
    Runtime,
    ScriptedModel,
    Tool,
    ToolDefinitionError,
)
from stockade.agents.tools import tool


class Address(pydantic.BaseModel):
    city: str
    zip_code: str | None = None


def lookup_account(
    account_id: Annotated[str, pydantic.Field(description="the customer's account id")],
    include_history: bool = False,
    limit: int = 10,
) -> dict[str, object]:
    """Look up an account by its id.

    Longer notes that the model does not need.
    """
    return {"id": account_id, "history": include_history, "limit": limit}


async def ship(item: str, mode: Literal["air", "sea"], to: Address) -> str:
    """Ship an item."""
    return f"{item} by {mode} to {to.city}"


def test_schema_from_type_hints() -> None:
    schema = Tool(lookup_account).schema()
    function = schema["function"]
    assert schema["type"] == "function"
    assert function["name"] == "lookup_account"
    assert function["description"] == "Look up an account by its id."
    params = function["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["account_id"]
    assert params["properties"]["account_id"] == {
        "description": "the customer's account id",
        "title": "Account Id",
        "type": "string",
    }
    assert params["properties"]["include_history"]["type"] == "boolean"
    assert params["properties"]["limit"]["default"] == 10
    assert params["additionalProperties"] is False


def test_schema_of_literal_and_nested_model() -> None:
    params = Tool(ship).schema()["function"]["parameters"]
    assert params["properties"]["mode"]["enum"] == ["air", "sea"]
    assert params["properties"]["to"] == {"$ref": "#/$defs/Address"}
    assert "Address" in params["$defs"]


def test_functions_that_cannot_be_described_are_refused() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def variadic(*args: int) -> int:
        return 0

    with pytest.raises(ToolDefinitionError, match="'x' has no type hint"):
        Tool(untyped)
    with pytest.raises(ToolDefinitionError, match=r"\*args"):
        Tool(variadic)
    with pytest.raises(ToolDefinitionError):
        Runtime([ChatAgent("a", tools=[untyped])])  # refused at registration, not mid-chat


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ('{"include_history": true}', "account_id: Field required"),
        ('{"account_id": "1", "limit": "ten"}', "limit: Input should be a valid integer"),
        ('{"account_id": "1", "admin": true}', "admin: Extra inputs are not permitted"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_arguments_are_validated_before_the_call(raw: str, needle: str) -> None:
    called: list[str] = []

    def probe(account_id: str, limit: int = 1) -> str:
        called.append(account_id)
        return "ran"

    outcome = asyncio.run(Tool(probe, name="lookup_account").call(raw))
    assert not outcome.ok
    assert needle.split(":")[0] in outcome.content and needle.split(": ")[-1] in outcome.content
    assert called == []


def test_calls_sync_and_async_tools() -> None:
    ok = asyncio.run(Tool(lookup_account).call('{"account_id": "42"}'))
    assert ok.ok and json.loads(ok.content) == {"id": "42", "history": False, "limit": 10}
    shipped = asyncio.run(Tool(ship).call('{"item": "box", "mode": "sea", "to": {"city": "Oslo"}}'))
    assert shipped.content == "box by sea to Oslo"


def test_tool_exceptions_become_results() -> None:
    @tool(name="explode")
    def boom(x: int) -> int:
        """Always fails."""
        raise ValueError(f"bad {x}")

    outcome = asyncio.run(boom.call('{"x": 1}'))
    assert (outcome.ok, outcome.content) == (False, "Error: explode raised ValueError: bad 1")


def test_tool_errors_go_back_to_the_model_and_the_chat_goes_on() -> None:
    model = ScriptedModel(
        [
            ModelResponse.calling("lookup_account", '{"account_id": 42}'),  # wrong type
            ModelResponse.calling("no_such_tool", {}),
            ModelResponse.calling("lookup_account", {"account_id": "42"}),
            "Account 42 found.",
        ]
    )
    agent = ChatAgent("support", tools=[lookup_account], model=model)
    answer = asyncio.run(agent.process_with_tools("find account 42"))
    assert answer.content == "Account 42 found."
    final_prompt = model.calls[-1][0]
    tool_results = [m["content"] for m in final_prompt if m["role"] == "tool"]
    assert "account_id: Input should be a valid string" in tool_results[0]
    assert "no tool named 'no_such_tool'" in tool_results[1]
    assert json.loads(tool_results[2])["id"] == "42"
    events = agent.host.trace.of_kind("tool_call")
    assert [e.ok for e in events] == [False, False, True]  # type: ignore[attr-defined]
    assert agent.host.counters.tool_errors == 2


def test_a_result_that_cannot_be_text_goes_back_as_an_error() -> None:
    def raw() -> bytes:
        return b"\xff"

    def loop() -> list[object]:
        items: list[object] = []
        items.append(items)
        return items

    for function in (raw, loop):
        outcome = asyncio.run(Tool(function).call("{}"))
        assert not outcome.ok and "returned what cannot be text" in outcome.content
    arguments_as_an_object = asyncio.run(Tool(raw).call({"x": 1}))  # type: ignore[arg-type]
    assert not arguments_as_an_object.ok and "invalid arguments" in arguments_as_an_object.content


def test_tools_are_checked_when_the_agent_is_made() -> None:
    def lookup(key: str) -> str:
        return key

    for tools, match in (
        ([42], "a function or a Tool"),
        ([lookup, Tool(lookup)], "two tools of that name"),
    ):
        with pytest.raises(ToolDefinitionError, match=match):
            ChatAgent("a", tools=tools)  # type: ignore[arg-type]
    with pytest.raises(ToolDefinitionError, match="1-64 of"):  # what OpenAI refuses
        Tool(lookup, name="bad name!")

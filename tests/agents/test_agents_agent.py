"""ChatAgent: the model loop, the audit trail of model calls, the content filter."""

from __future__ import annotations

import asyncio
import re

import pytest

from stockade.agents import (
    ChatAgent,
    ConfigError,
    ContentBlockedError,
    GroupChat,
    ModelResponse,
    ModelResponseError,
    Runtime,
    ScriptedModel,
    ScriptExhaustedError,
    TextMessage,
)
from stockade.agents.models.base import Direction
from stockade.agents.trace.events import FilterEvent, ModelCallEvent


def no_secrets(text: str, direction: Direction) -> str | None:
    """Blocks anything mentioning a password; redacts card numbers."""
    if "password" in text.lower():
        return None
    return re.sub(r"\b\d{4}-\d{4}-\d{4}-\d{4}\b", "[card]", text)


def test_default_handler_answers_with_the_model() -> None:
    model = ScriptedModel(["Hello! How can I help?"])
    agent = ChatAgent("helper", system_prompt="Be brief.", model=model)
    result = asyncio.run(GroupChat([agent], routing="role_based").run("hi"))
    assert result.termination == "completed"
    assert result.messages[-1] == result.last_message
    assert result.messages[-1].content == "Hello! How can I help?"  # type: ignore[attr-defined]
    prompt, tools = model.calls[0]
    assert prompt == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi", "name": "user"},
    ]
    assert tools == []


def test_every_model_call_is_audited_in_the_trace() -> None:
    model = ScriptedModel([ModelResponse.calling("clock", {}), "It is noon."])

    def clock() -> str:
        """The time."""
        return "12:00"

    agent = ChatAgent("timekeeper", tools=[clock], model=model)
    asyncio.run(agent.process_with_tools("what time is it?"))
    host = agent.host
    calls = [e for e in host.trace if isinstance(e, ModelCallEvent)]
    assert len(calls) == 2
    first, second = calls
    assert first.agent == "timekeeper" and first.model == "scripted"
    assert first.tools == ["clock"]
    assert first.tool_calls[0]["function"]["name"] == "clock"
    assert second.content == "It is noon."
    assert second.messages[-1] == {
        "role": "tool",
        "tool_call_id": first.tool_calls[0]["id"],
        "content": "12:00",
    }
    assert second.completion_tokens == 3 and second.prompt_tokens > 0
    assert all(c.latency >= 0 for c in calls)
    assert host.counters.model_calls == 2
    assert host.counters.completion_tokens == 3


def test_model_errors_are_audited_then_raised() -> None:
    agent = ChatAgent("a", model=ScriptedModel([]))
    with pytest.raises(ScriptExhaustedError):
        asyncio.run(agent.process_with_tools("hi"))
    [event] = agent.host.trace.of_kind("model_call")
    assert "ScriptExhaustedError" in event.error  # type: ignore[attr-defined]
    assert agent.host.counters.model_errors == 1


def test_content_filter_blocks_input_before_the_model_sees_it() -> None:
    model = ScriptedModel(["never used"])
    agent = ChatAgent("a", model=model, content_filter=no_secrets)
    result = asyncio.run(GroupChat([agent], routing="role_based").run("my password is hunter2"))
    assert result.termination == "error"
    assert isinstance(result.error, ContentBlockedError)
    assert result.error.direction == "input"
    assert model.calls == []
    [blocked] = result.trace.of_kind("content_filter")
    assert isinstance(blocked, FilterEvent)
    assert (blocked.direction, blocked.action) == ("input", "blocked")


def test_content_filter_blocks_output() -> None:
    agent = ChatAgent("a", model=ScriptedModel(["the admin password is x"]))
    runtime = Runtime([agent], content_filter=no_secrets)  # a runtime-wide filter
    with pytest.raises(ContentBlockedError, match="output"):
        asyncio.run(agent.process_with_tools("tell me"))
    [event] = runtime.trace.of_kind("model_call")
    assert "ContentBlockedError" in event.error  # type: ignore[attr-defined]


def test_content_filter_redacts_both_ways() -> None:
    model = ScriptedModel(["Charged card 9999-8888-7777-6666."])
    agent = ChatAgent("a", model=model, content_filter=no_secrets)
    answer = asyncio.run(agent.process_with_tools("refund card 1234-5678-9012-3456"))
    assert model.calls[0][0][-1]["content"] == "refund card [card]"
    assert answer.content == "Charged card [card]."
    actions = [(e.direction, e.action) for e in agent.host.trace.of_kind("content_filter")]  # type: ignore[attr-defined]
    assert actions == [("input", "redacted"), ("output", "redacted")]


def test_agent_without_a_model_says_how_to_give_it_one() -> None:
    with pytest.raises(ConfigError, match=r"has no model.*ScriptedModel"):
        asyncio.run(ChatAgent("a").process_with_tools("hi"))


def test_runtime_model_is_the_default() -> None:
    agent = ChatAgent("a")
    Runtime([agent], model=ScriptedModel(["from the runtime's model"]))
    assert asyncio.run(agent.process_with_tools("hi")).content == "from the runtime's model"


def test_endless_tool_calls_are_cut_off() -> None:
    def noop() -> str:
        """Nothing."""
        return ""

    model = ScriptedModel([ModelResponse.calling("noop", {})] * 3)
    agent = ChatAgent("a", tools=[noop], model=model, max_tool_steps=3)
    with pytest.raises(ModelResponseError, match="still calling tools after 3 steps"):
        asyncio.run(agent.process_with_tools("go"))


def test_prompt_carries_the_agents_earlier_exchanges() -> None:
    model = ScriptedModel(["first answer", "second answer"])
    agent = ChatAgent("a", model=model)
    chat = GroupChat([agent], routing="role_based")
    asyncio.run(chat.run("first question"))
    asyncio.run(chat.run(TextMessage(content="second question")))
    assert [m["content"] for m in model.calls[1][0]] == [
        "first question",
        "first answer",
        "second question",
    ]


def test_invalid_agent_name() -> None:
    with pytest.raises(ConfigError, match="agent name 'has space' is invalid"):
        ChatAgent("has space")

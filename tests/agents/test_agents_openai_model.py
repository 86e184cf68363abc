"""OpenAIModel against a real local HTTP server, through the `openai` package itself."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fake_openai import FakeOpenAI, Step, chunk, completion, error, usage_chunk

from stockade.agents import (
    ChatAgent,
    ConfigError,
    ContentBlockedError,
    GroupChat,
    ModelAuthError,
    ModelResponseError,
    ModelUnavailableError,
    OpenAIModel,
)

HELLO = [{"role": "user", "content": "hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "weather", "description": "", "parameters": {"type": "object"}},
}


def local(server: FakeOpenAI, **options: Any) -> OpenAIModel:
    options.setdefault("backoff", 0.01)
    return OpenAIModel.local(f"{server.url}/v1", "llama-test", **options)


def complete(model: OpenAIModel, tools: list[dict[str, Any]] | None = None) -> Any:
    return asyncio.run(model.complete(HELLO, tools or []))


def test_text_completion_sends_the_protocol(fake_server: FakeOpenAI) -> None:
    fake_server.add(completion("hi there", usage=(12, 3)))
    response = complete(local(fake_server))
    assert response.content == "hi there"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (12, 3)
    assert response.attempts == 1
    [request] = fake_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "llama-test"
    assert request.body["messages"] == HELLO
    assert request.headers["authorization"] == "Bearer not-needed"


def test_tool_calls_are_parsed(fake_server: FakeOpenAI) -> None:
    fake_server.add(completion(tool_calls=[("weather", {"city": "Oslo"})]))
    response = complete(local(fake_server), [WEATHER_TOOL])
    [call] = response.tool_calls
    assert (call.name, json.loads(call.arguments), call.id) == (
        "weather",
        {"city": "Oslo"},
        "call_0",
    )
    assert fake_server.requests[0].body["tools"] == [WEATHER_TOOL]


def test_streaming_joins_text_and_tool_call_deltas(fake_server: FakeOpenAI) -> None:
    call_start = {"index": 0, "id": "call_s", "type": "function"}
    fake_server.add(
        Step(
            chunks=[
                chunk({"role": "assistant", "content": "Let me "}),
                chunk({"content": "check."}),
                chunk({"tool_calls": [{**call_start, "function": {"name": "weather"}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Oslo"}'}}]}),
                chunk({}, finish_reason="tool_calls"),
                usage_chunk(20, 9),
            ]
        )
    )
    response = complete(local(fake_server, stream=True), [WEATHER_TOOL])
    assert response.content == "Let me check."
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_s", "weather", '{"city": "Oslo"}')
    ]
    assert response.finish_reason == "tool_calls"
    assert response.usage.prompt_tokens == 20
    body = fake_server.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def _answer(message: Any) -> dict[str, Any]:
    return {
        "id": "x",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


def _call(function: Any, call_id: Any = "c1") -> dict[str, Any]:
    return {
        "role": "assistant",
        "tool_calls": [{"id": call_id, "type": "function", "function": function}],
    }


@pytest.mark.parametrize(
    "body",
    [
        _answer(None),  # no message at all
        _answer(_call(None)),  # no function
        _answer(_call({"name": None, "arguments": "{}"})),  # no name
        {"choices": "nonsense"},
        _answer({"role": "assistant", "content": 5}),  # content that is not text
        {**_answer({"role": "assistant", "content": "x"}), "usage": {"prompt_tokens": "many"}},
    ],
)
def test_an_answer_that_cannot_be_read_is_a_model_response_error(
    fake_server: FakeOpenAI, body: dict[str, Any]
) -> None:
    fake_server.add(Step(body=body))
    with pytest.raises(ModelResponseError):
        complete(local(fake_server), [WEATHER_TOOL])


def test_tool_call_arguments_sent_as_an_object_and_no_id_are_taken(fake_server: FakeOpenAI) -> None:
    fake_server.add(
        Step(body=_answer(_call({"name": "weather", "arguments": {"city": "Oslo"}}, None)))
    )
    [call] = complete(local(fake_server), [WEATHER_TOOL]).tool_calls
    assert (call.name, json.loads(call.arguments), call.id) == (
        "weather",
        {"city": "Oslo"},
        "call_0",
    )


def test_rate_limit_is_retried_then_succeeds(fake_server: FakeOpenAI) -> None:
    fake_server.add(
        Step(**vars(error(429, "slow down")) | {"headers": {"Retry-After": "0"}}),
        completion("after retry"),
    )
    response = complete(local(fake_server))
    assert response.content == "after retry"
    assert response.attempts == 2
    assert len(fake_server.requests) == 2


def test_server_errors_outlast_retries(fake_server: FakeOpenAI) -> None:
    fake_server.add(*[error(503, "overloaded") for _ in range(3)])
    with pytest.raises(ModelUnavailableError, match=r"HTTP 503 after 3 attempt"):
        complete(local(fake_server, max_retries=2))
    assert len(fake_server.requests) == 3


def test_auth_failure_is_clear_and_not_retried(fake_server: FakeOpenAI) -> None:
    fake_server.add(error(401, "Incorrect API key provided"))
    with pytest.raises(ModelAuthError, match=r"refused the credentials \(HTTP 401\)") as info:
        complete(local(fake_server))
    assert "Incorrect API key" in str(info.value)
    assert len(fake_server.requests) == 1


def test_other_client_errors_are_not_retried(fake_server: FakeOpenAI) -> None:
    fake_server.add(error(400, "bad tool schema"))
    with pytest.raises(ModelResponseError, match="HTTP 400"):
        complete(local(fake_server))
    assert len(fake_server.requests) == 1


def test_timeout(fake_server: FakeOpenAI) -> None:
    fake_server.add(Step(body=completion("late"), delay=0.5))
    with pytest.raises(ModelUnavailableError, match="timed out"):
        complete(local(fake_server, timeout=0.1, max_retries=0))


def test_provider_content_filter(fake_server: FakeOpenAI) -> None:
    fake_server.add(completion("", finish_reason="content_filter"))
    fake_server.add(error(400, "filtered", code="content_filter"))
    model = local(fake_server)
    with pytest.raises(ContentBlockedError, match="output"):
        complete(model)
    with pytest.raises(ContentBlockedError, match="input"):
        complete(model)


def test_azure_with_api_key_uses_deployment_url(fake_server: FakeOpenAI) -> None:
    fake_server.add(completion("from azure"))
    model = OpenAIModel.azure(
        endpoint=fake_server.url, deployment="gpt4o-dep", api_version="2024-06-01", api_key="k1"
    )
    assert complete(model).content == "from azure"
    [request] = fake_server.requests
    assert request.path == "/openai/deployments/gpt4o-dep/chat/completions"
    assert request.query["api-version"] == ["2024-06-01"]
    assert request.headers["api-key"] == "k1"


@pytest.mark.parametrize("is_async", [False, True])
def test_azure_with_entra_token_provider(fake_server: FakeOpenAI, is_async: bool) -> None:
    issued: list[str] = []

    def sync_provider() -> str:
        issued.append("token")
        return f"entra-{len(issued)}"

    async def async_provider() -> str:
        return sync_provider()

    fake_server.add(completion("one"), completion("two"))
    model = OpenAIModel.azure(
        endpoint=fake_server.url,
        deployment="dep",
        api_version="2024-10-21",
        token_provider=async_provider if is_async else sync_provider,
    )
    complete(model)
    complete(model)
    auth = [r.headers["authorization"] for r in fake_server.requests]
    assert auth == ["Bearer entra-1", "Bearer entra-2"]
    assert "api-key" not in fake_server.requests[0].headers


def test_azure_needs_exactly_one_credential() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        OpenAIModel.azure(endpoint="http://x", deployment="d", api_version="v")


def test_missing_openai_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4o-mini")


def test_agent_runs_a_tool_through_the_local_server(fake_server: FakeOpenAI) -> None:
    def weather(city: str) -> str:
        """Today's weather in a city."""
        return f"sunny in {city}"

    fake_server.add(completion(tool_calls=[("weather", {"city": "Oslo"})]), completion("Sunny."))
    agent = ChatAgent("forecaster", tools=[weather], model=local(fake_server))
    result = asyncio.run(GroupChat([agent], routing="role_based").run("weather in Oslo?"))
    assert result.termination == "completed"
    assert result.messages[-1].content == "Sunny."  # type: ignore[attr-defined]
    second = fake_server.requests[1].body["messages"]
    assert second[-1] == {"role": "tool", "tool_call_id": "call_0", "content": "sunny in Oslo"}
    assert fake_server.requests[0].body["tools"][0]["function"]["name"] == "weather"


def test_a_lone_surrogate_in_an_answer_becomes_a_replacement_character(
    fake_server: FakeOpenAI,
) -> None:
    fake_server.add(Step(body=_answer({"role": "assistant", "content": "half \ud83d!"})))
    assert complete(local(fake_server)).content == "half \ufffd!"

"""`OpenAIModel`: the OpenAI-compatible client, over the `openai` package.

One class for three kinds of server:

    OpenAIModel("gpt-4o-mini")                                    # OpenAI (OPENAI_API_KEY)
    OpenAIModel.azure(endpoint=..., deployment=..., api_version=...,
                      api_key=... | token_provider=callable)       # Azure OpenAI / Entra ID
    OpenAIModel.local("http://127.0.0.1:8000/v1", "llama3")       # vLLM, llama.cpp, Ollama...

Retries are ours, not the package's (it is built with `max_retries=0`), so that the backoff is
the same on every `openai` version and each call reports how many attempts it took: 408, 409,
429, 5xx, timeouts and connection errors are retried with exponential backoff and jitter,
honouring `Retry-After`. The package's exceptions are translated to ours in one place,
`_translate`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import openai

from ..errors import (
    AgentError,
    ConfigError,
    ContentBlockedError,
    ModelAuthError,
    ModelResponseError,
    ModelUnavailableError,
)
from ..messages import without_lone_surrogates
from .base import ChatMessages, ModelResponse, ToolCall, Usage

TokenProvider = Callable[[], "str | Awaitable[str]"]

_RETRY_STATUS = frozenset({408, 409, 429})


class OpenAIModel:
    """A `ModelClient` for any server that speaks the chat-completions protocol."""

    provider = "openai"  # gen_ai.provider.name in the spans (trace/spans.py)

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        stream: bool = False,
        params: dict[str, Any] | None = None,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        self.model = model
        self.name = model
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stream = stream
        self.params = dict(params or {})
        self.client = client or _build(
            openai.AsyncOpenAI, api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )

    @classmethod
    def azure(
        cls,
        *,
        endpoint: str,
        deployment: str,
        api_version: str,
        api_key: str | None = None,
        token_provider: TokenProvider | None = None,
        timeout: float = 60.0,
        **options: Any,
    ) -> OpenAIModel:
        """Azure OpenAI: an API key, or an Entra ID token provider (sync or async callable)."""
        if (api_key is None) == (token_provider is None):
            raise ConfigError(
                "Azure OpenAI needs exactly one of api_key and token_provider",
                hint="for Entra ID, token_provider=azure.identity.get_bearer_token_provider(...)",
            )
        client = _build(
            openai.AsyncAzureOpenAI,
            azure_endpoint=endpoint,
            azure_deployment=deployment,
            api_version=api_version,
            api_key=api_key,
            azure_ad_token_provider=token_provider,
            timeout=timeout,
            max_retries=0,
        )
        return cls(deployment, client=client, **options)

    @classmethod
    def local(
        cls, base_url: str, model: str, *, api_key: str = "not-needed", **options: Any
    ) -> OpenAIModel:
        """A local server (vLLM, llama.cpp, Ollama...): most ignore the key but the package
        insists on one, so a placeholder is sent."""
        return cls(model, api_key=api_key, base_url=base_url, **options)

    async def complete(
        self, messages: ChatMessages, tools: Sequence[dict[str, Any]] = ()
    ) -> ModelResponse:
        request: dict[str, Any] = {"model": self.model, "messages": messages, **self.params}
        if tools:
            request["tools"] = list(tools)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._once(request)
            except openai.OpenAIError as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise _translate(exc, self._where(), attempt) from exc
                await asyncio.sleep(delay)
                continue
            return ModelResponse(
                content=response.content,
                tool_calls=response.tool_calls,
                usage=response.usage,
                finish_reason=response.finish_reason,
                model=response.model or self.model,
                attempts=attempt,
            )

    async def _once(self, request: dict[str, Any]) -> ModelResponse:
        try:
            if self.stream:
                chunks = await self.client.chat.completions.create(
                    **request, stream=True, stream_options={"include_usage": True}
                )
                response = await _collect_stream(chunks)
            else:
                completion = await self.client.chat.completions.create(**request)
                response = _from_completion(completion)
        # The server answered, but not in the API's shape: a body that is not JSON, a null
        # message or function, a list where an object belongs.
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            raise ModelResponseError(
                f"{self._where()}: an answer that cannot be read: {why}"
            ) from exc
        if response.finish_reason == "content_filter":
            raise ContentBlockedError("output", "the provider's content filter stopped the answer")
        return response

    async def close(self) -> None:
        """Close the HTTP connections of the underlying `openai` client."""
        await self.client.close()

    def _retry_delay(self, exc: openai.OpenAIError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when this error is final."""
        if attempt > self.max_retries or not _retryable(exc):
            return None
        header = _retry_after(exc)
        if header is not None:
            return min(header, self.max_backoff)
        return min(self.backoff * 2.0 ** (attempt - 1), self.max_backoff) * random.uniform(0.5, 1.0)

    def _where(self) -> str:
        return f"{self.model} at {self.client.base_url}"


def _build(factory: Callable[..., openai.AsyncOpenAI], **kwargs: Any) -> openai.AsyncOpenAI:
    try:
        return factory(**kwargs)
    except openai.OpenAIError as exc:
        raise ConfigError(
            f"cannot create the model client: {exc}",
            hint="pass api_key= (or token_provider= for Azure), or set OPENAI_API_KEY",
        ) from None


def _retryable(exc: openai.OpenAIError) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # timeouts are a subclass
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUS or exc.status_code >= 500
    return False


def _retry_after(exc: openai.OpenAIError) -> float | None:
    response = getattr(exc, "response", None)
    value: str | None = response.headers.get("retry-after") if response is not None else None
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return max(0.0, seconds)


def _translate(exc: openai.OpenAIError, where: str, attempts: int) -> AgentError:
    """The single boundary between `openai`'s exceptions and ours."""
    tries = f"after {attempts} attempt(s)"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ModelAuthError(
            f"{where} refused the credentials (HTTP {exc.status_code}): {exc.message}; "
            "check the API key, or the token provider and its scope"
        )
    if isinstance(exc, openai.APITimeoutError):
        return ModelUnavailableError(f"{where} timed out {tries}")
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnavailableError(f"cannot reach {where} {tries}: {exc}")
    if isinstance(exc, openai.APIStatusError):
        if _is_content_filter(exc):
            return ContentBlockedError("input", f"the provider's content filter: {exc.message}")
        if _retryable(exc):
            return ModelUnavailableError(f"{where}: HTTP {exc.status_code} {tries}: {exc.message}")
        return ModelResponseError(f"{where}: HTTP {exc.status_code}: {exc.message}")
    return ModelResponseError(f"{where}: {type(exc).__name__}: {exc}")


def _is_content_filter(exc: openai.APIStatusError) -> bool:
    # Azure refuses filtered prompts with HTTP 400 and code "content_filter".
    return exc.status_code == 400 and getattr(exc, "code", None) == "content_filter"


def _from_completion(completion: Any) -> ModelResponse:
    if not completion.choices:
        raise ModelResponseError(f"the server answered with no choices: {completion!r:.300}")
    choice = completion.choices[0]
    calls = tuple(
        _tool_call(c.function.name, c.function.arguments, c.id, i)
        for i, c in enumerate(choice.message.tool_calls or ())
    )
    return ModelResponse(
        content=_text(choice.message.content),
        tool_calls=calls,
        usage=_usage(completion.usage),
        finish_reason=choice.finish_reason,
        model=completion.model or "",
    )


def _tool_call(name: Any, arguments: Any, call_id: Any, index: int) -> ToolCall:
    if not isinstance(name, str) or not name:
        raise ModelResponseError(f"the server sent a tool call without a name: {name!r:.100}")
    if not isinstance(arguments, str):  # some servers send the object itself
        arguments = json.dumps(arguments) if arguments is not None else "{}"
    call_id = call_id if isinstance(call_id, str) and call_id else f"call_{index}"
    return ToolCall(name, arguments or "{}", call_id)


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))


def _text(content: Any) -> str | None:
    """The answer's text, fit for the trace and the conversation."""
    if content is None:
        return None
    if not isinstance(content, str):
        raise ModelResponseError(f"the answer's content is not text: {content!r:.100}")
    return without_lone_surrogates(content)


async def _collect_stream(chunks: Any) -> ModelResponse:
    """Join streamed deltas: text pieces, and tool calls assembled by their index."""
    text: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    usage, finish, model = Usage(), None, ""
    async for chunk in chunks:
        model = chunk.model or model
        if chunk.usage is not None:
            usage = _usage(chunk.usage)
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            if choice.delta.content:
                text.append(choice.delta.content)
            for delta in choice.delta.tool_calls or ():
                _merge_call(calls.setdefault(delta.index, {}), delta)
    tool_calls = tuple(
        _tool_call(c.get("name"), c.get("arguments"), c.get("id"), i)
        for i, c in sorted(calls.items())
    )
    content = _text("".join(text)) if text else None
    return ModelResponse(content, tool_calls, usage, finish, model)


def _merge_call(into: dict[str, str], delta: Any) -> None:
    if delta.id:
        into["id"] = delta.id
    function = delta.function
    if function is not None:
        if function.name:
            into["name"] = into.get("name", "") + function.name
        if function.arguments:
            into["arguments"] = into.get("arguments", "") + function.arguments

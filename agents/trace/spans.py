"""The agent layer's trace as OpenTelemetry spans, following the GenAI semantic conventions
through OpenTelemetry's own GenAI utilities (`opentelemetry-util-genai`, `stockade[otel]`).

    runtime = Runtime(agents, tracer_provider=provider)

`invoke_agent {agent}` spans each handler call, `chat {model}` each model call (tokens,
finish reasons) and `execute_tool {tool}` each tool call. Each is the current span while it
runs, so what runs inside nests under it: a `CodeExecutionAgent(tracer_provider=...)`'s
`stockade.*` sandbox spans, or a tool's own spans. Without a provider nothing is imported and
every span is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..errors import ConfigError


class Spans:
    """The GenAI spans of one trace, or none when `tracer_provider` is None."""

    def __init__(self, tracer_provider: Any | None = None) -> None:
        self._handler: Any | None = None
        if tracer_provider is None:
            return
        try:
            from opentelemetry.util.genai.handler import TelemetryHandler
        except ImportError as exc:
            raise ConfigError(
                f"tracer_provider needs OpenTelemetry's GenAI utilities ({exc})",
                hint="pip install 'stockade[otel]'",
            ) from None
        self._handler = TelemetryHandler(
            tracer_provider=tracer_provider, instrumentation_scope_name="stockade.agents"
        )

    @property
    def enabled(self) -> bool:
        return self._handler is not None

    @contextlib.contextmanager
    def agent(self, name: str) -> Iterator[None]:
        """`invoke_agent {name}` around one handler call of a local agent."""
        if self._handler is None:
            yield
            return
        with self._handler.invoke_local_agent(agent_name=name):
            yield

    @contextlib.contextmanager
    def model_call(self, model: Any) -> Iterator[Any]:
        """`chat {model}` around one model call; `finish_model_call` fills in its answer."""
        if self._handler is None:
            yield None
            return
        provider = getattr(model, "provider", type(model).__name__)
        with self._handler.inference(provider, request_model=model.name) as invocation:
            yield invocation

    @staticmethod
    def finish_model_call(invocation: Any, event: Any) -> None:
        """What the model answered, from the call's `ModelCallEvent`."""
        if invocation is None:
            return
        invocation.input_tokens = event.prompt_tokens
        invocation.output_tokens = event.completion_tokens
        if event.finish_reason:
            invocation.finish_reasons = [event.finish_reason]

    @contextlib.contextmanager
    def tool(self, agent: str, name: str, call_id: str) -> Iterator[Any]:
        """`execute_tool {name}` around one tool call (type `function`)."""
        if self._handler is None:
            yield None
            return
        with self._handler.tool(name, tool_type="function", agent_name=agent) as invocation:
            invocation.tool_call_id = call_id
            yield invocation

    @staticmethod
    def fail_tool(invocation: Any, why: str) -> None:
        """A tool call that answered with an error (`error.type` `tool_error`)."""
        if invocation is not None:
            from opentelemetry.util.genai.types import Error

            invocation.fail(Error(message=why, type="tool_error"))

"""The agent layer's trace as GenAI spans (OpenTelemetry's GenAI utilities), read back through
the SDK's in-memory exporter: `invoke_agent` around each handler, `chat` around each model call,
`execute_tool` around each tool call, and a `CodeExecutionAgent`'s real sandbox runs as
`stockade.*` spans under its `invoke_agent`."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from stockade.agents import (
    ChatAgent,
    CodeExecutionAgent,
    ConfigError,
    Context,
    Message,
    ModelResponse,
    Runtime,
    ScriptedModel,
    TextMessage,
    ToolCall,
    Trace,
    tool,
)


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


class Asker(ChatAgent):
    async def on_message(self, message: Message, ctx: Context) -> None:
        await ctx.reply(await self.process_with_tools(message))


def by_name(span_exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in span_exporter.get_finished_spans()}


def test_handler_model_and_tool_calls_are_genai_spans(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    calls = [ToolCall(id="c1", name="add", arguments='{"a": 1, "b": 2}'),
             ToolCall(id="c2", name="nope", arguments="{}")]  # fmt: skip
    model = ScriptedModel([ModelResponse(tool_calls=calls), "3"], name="m-1")
    asker = Asker("asker", model=model, tools=[add])
    runtime = Runtime([asker], tracer_provider=tracer_provider)

    async def chat() -> None:
        await runtime.send(TextMessage(content="1 + 2?"), to="asker")
        await runtime.run_until_idle()

    asyncio.run(chat())
    spans = span_exporter.get_finished_spans()
    agent = by_name(span_exporter)["invoke_agent asker"]
    assert (agent.attributes or {})["gen_ai.operation.name"] == "invoke_agent"
    children = [
        span for span in spans if span.parent and span.parent.span_id == agent.context.span_id
    ]
    assert [span.name for span in children] == [
        "chat m-1", "execute_tool add", "execute_tool nope", "chat m-1"
    ]  # fmt: skip
    first_chat, added, unknown, last_chat = children
    assert (first_chat.attributes or {})["gen_ai.provider.name"] == "scripted"
    assert (last_chat.attributes or {})["gen_ai.usage.output_tokens"] >= 1
    assert (last_chat.attributes or {})["gen_ai.response.finish_reasons"] == ("stop",)
    assert (added.attributes or {})["gen_ai.tool.call.id"] == "c1"
    assert (added.attributes or {})["gen_ai.agent.name"] == "asker"
    assert added.status.status_code is not StatusCode.ERROR
    assert unknown.status.status_code is StatusCode.ERROR
    assert (unknown.attributes or {})["error.type"] == "tool_error"


@pytest.mark.usefixtures("real_sandbox")
def test_a_code_runners_sandbox_runs_nest_under_its_agent_span(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    runner = CodeExecutionAgent(timeout=10, tracer_provider=tracer_provider)
    runtime = Runtime([runner], tracer_provider=tracer_provider)

    async def chat() -> None:
        await runtime.send(TextMessage(content="```python\nimport os; print(os.getuid())\n```"),
                           to="code_runner")  # fmt: skip
        await runtime.run_until_idle()

    try:
        asyncio.run(chat())
    finally:
        runner.close()
    spans = by_name(span_exporter)
    run, agent = spans["stockade.run_code"], spans["invoke_agent code_runner"]
    assert run.parent is not None and run.parent.span_id == agent.context.span_id
    assert (run.attributes or {})["stockade.status"] == "ok"
    assert (run.attributes or {})["stockade.limits.timeout"] == 10.0


def test_without_a_provider_there_are_no_spans_and_a_trace_takes_one(
    tracer_provider: TracerProvider,
) -> None:
    with pytest.raises(ConfigError, match="tracer_provider"):
        Runtime(trace=Trace(), tracer_provider=tracer_provider)
    runtime = Runtime(trace=Trace(tracer_provider=tracer_provider))
    assert runtime.trace.spans.enabled and not Runtime().trace.spans.enabled

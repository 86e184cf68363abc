"""OpenTelemetry spans of real runs, read back through the SDK's in-memory exporter: each run,
pooled run and session call opens one `stockade.*` span under the caller's current span (as a
framework's tool span would be), with its limits and outcome; without a provider nothing of
OpenTelemetry is even imported."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from stockade import Policy, PolicyError, Sandbox, SessionError

POLICY = Policy.load("default").override(timeout=5, memory="128M", output_limit=100)
CALLER = "execute_tool run"  # as a framework's own tool span is named


@contextlib.contextmanager
def under_a_tool_span(provider: TracerProvider, pool: int = 0) -> Iterator[Sandbox]:
    """A traced sandbox, used inside the caller's span."""
    with (
        Sandbox(POLICY, pool=pool, tracer_provider=provider) as box,
        provider.get_tracer("framework").start_as_current_span(CALLER),
    ):
        yield box


def spans(exported: InMemorySpanExporter) -> list[ReadableSpan]:
    """The finished spans but the caller's own, each checked to be the caller's child."""
    finished = exported.get_finished_spans()
    (caller,) = [span for span in finished if span.name == CALLER]
    ours = [span for span in finished if span is not caller]
    assert all(span.parent and span.parent.span_id == caller.context.span_id for span in ours)
    assert all(span.context.trace_id == caller.context.trace_id for span in ours)
    return ours


def test_a_run_opens_a_span_under_the_callers(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    with under_a_tool_span(tracer_provider) as box:
        box.run(["sh", "-c", "head -c 500 /dev/zero; exit 3"], timeout=2)
        box.run(["true"])
    failed, passed = spans(span_exporter)
    assert failed.name == passed.name == "stockade.run"
    attributes = failed.attributes or {}
    assert attributes["stockade.status"] == attributes["error.type"] == "nonzero_exit"
    assert attributes["process.exit.code"] == 3
    assert attributes["stockade.stdout_truncated"] is True  # 500 bytes, over the 100 allowed
    assert attributes["stockade.limits.timeout"] == 2.0  # the call's own
    assert attributes["stockade.limits.memory"] == 128 << 20  # the policy's
    assert attributes["stockade.limits.output"] == 100
    assert attributes["stockade.command"] == "sh"
    assert attributes["stockade.wall_time"] > 0 and attributes["stockade.peak_memory"] > 0
    assert failed.status.status_code is StatusCode.ERROR
    assert passed.status.status_code is StatusCode.UNSET
    assert (passed.attributes or {})["process.exit.code"] == 0
    assert "error.type" not in (passed.attributes or {})


def test_pooled_and_fresh_run_code_and_arun(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    async def run_async(box: Sandbox) -> None:
        await box.arun_code("print(3)")  # in a worker thread: the context goes along

    with under_a_tool_span(tracer_provider, pool=1) as box:
        box.run_code("print(1)")
        box.run_code("import time; time.sleep(5)", memory="64M", timeout=0.5)
        asyncio.run(run_async(box))
    pooled, fresh, later = spans(span_exporter)
    assert [span.name for span in (pooled, fresh, later)] == ["stockade.run_code"] * 3
    assert (pooled.attributes or {})["stockade.pooled"] is True
    assert (fresh.attributes or {})["stockade.pooled"] is False
    assert (fresh.attributes or {})["stockade.status"] == "timeout"
    assert (fresh.attributes or {})["stockade.limits.memory"] == 64 << 20
    assert (later.attributes or {})["stockade.status"] == "ok"


def test_session_calls_open_spans(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    with under_a_tool_span(tracer_provider) as box, box.session() as session:
        session.run("x = 1")
        session.write_file("a.txt", "a")
        session.read_file("a.txt")
        session.list_files()
    names = [span.name for span in spans(span_exporter)]
    assert names == [
        f"stockade.session.{what}" for what in ("open", "run", "write", "read", "list", "close")
    ]
    ids = {(span.attributes or {})["stockade.session.id"] for span in spans(span_exporter)}
    assert len(ids) == 1


def test_workspace_commands_and_its_sessions_open_spans(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    with under_a_tool_span(tracer_provider) as box, box.workspace() as workspace:
        workspace.exec(["true"])
        workspace.exec("exit 3")
        with workspace.python() as session:
            session.run("x = 1")
    commands = [s for s in spans(span_exporter) if s.name == "stockade.workspace.exec"]
    assert [(s.attributes or {})["stockade.status"] for s in commands] == ["ok", "nonzero_exit"]
    assert (commands[1].attributes or {})["process.exit.code"] == 3
    assert commands[1].status.status_code is StatusCode.ERROR
    assert "stockade.session.run" in [s.name for s in spans(span_exporter)]


def test_an_exception_is_recorded_on_the_span(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    with under_a_tool_span(tracer_provider) as box:
        with pytest.raises(PolicyError):
            box.run(["true"], memory="1K")
        with box.session() as session, pytest.raises(SessionError):
            session.run("import os; os._exit(9)")
    refused, _, lost, _ = spans(span_exporter)
    assert refused.status.status_code is lost.status.status_code is StatusCode.ERROR
    assert [event.name for event in refused.events] == ["exception"]
    assert lost.name == "stockade.session.run"


def test_a_tracer_provider_must_be_one() -> None:
    with pytest.raises(PolicyError, match="tracer_provider"):
        Sandbox(POLICY, tracer_provider="console")


def test_without_a_provider_nothing_of_opentelemetry_is_imported() -> None:
    probe = (
        "import sys; from stockade import Sandbox; box = Sandbox('default');"
        "r = box.run_code('print(1)'); box.close();"
        "print(r.stdout.strip(), any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60)
    assert done.stdout == b"1 False\n", done.stderr

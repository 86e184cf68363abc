"""Spans: OpenTelemetry tracing of what a `Sandbox` does, when it is given a `tracer_provider`.

    box = Sandbox(policy, tracer_provider=provider)
    box.run_code("print(1)")      # one `stockade.run_code` span, under the caller's current span

Each run, pooled run and session call opens one `stockade.*` span as the current span, so it
nests under whatever span the caller has open (a framework's `execute_tool` span, say). It
carries the limits the call runs under, then the outcome: `stockade.status`,
`process.exit.code`, `error.type` (the status, when it is not `ok`), the times, the peak memory
and whether output was cut. A status other than `ok` sets the span's status to ERROR; an
exception is recorded on the span as OpenTelemetry does.

Without a provider nothing here imports OpenTelemetry, and a span is a no-op: the command line
and untraced code pay nothing. Workspace commands and host callbacks open theirs the same way:
`sandbox.tracing.span("stockade.<what>", ...)`, then `.limits(...)` and `.result(...)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

AttributeValue = str | bool | int | float | Sequence[str]
_LIMITS = ("timeout", "cpu_time", "memory", "pids", "output")  # a policy's `limits` fields
_OUTCOME = ("signal", "wall_time", "cpu_time", "peak_memory", "stdout_truncated",
            "stderr_truncated")  # fmt: skip


class Span:
    """One open span, or none (no provider): what a call adds to it as it learns it."""

    def __init__(self, span: Any | None = None) -> None:
        self._span = span

    def set(self, **attributes: AttributeValue | None) -> None:
        """Attributes named `stockade.<name>`; None values are left out."""
        if self._span is not None:
            for name, value in attributes.items():
                if value is not None:
                    self._span.set_attribute(f"stockade.{name}", value)

    def limits(self, limits: Any) -> None:
        """The limits the call runs under (a policy's `limits`): seconds, bytes, a count."""
        if self._span is not None:
            self.set(**{f"limits.{name}": getattr(limits, name) for name in _LIMITS})

    def result(self, result: Any) -> None:
        """The call's outcome, from its `Result`."""
        if self._span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        status = result.status.value
        self.set(status=status, warnings=list(result.warnings) or None)
        self.set(**{name: getattr(result, name) for name in _OUTCOME})
        if result.exit_code is not None:
            self._span.set_attribute("process.exit.code", result.exit_code)
        if status != "ok":
            self._span.set_attribute("error.type", status)
            self._span.set_status(Status(StatusCode.ERROR, result.error or status))


class Tracing:
    """A sandbox's spans: OpenTelemetry's, or none when `tracer_provider` is None."""

    def __init__(self, tracer_provider: Any | None = None) -> None:
        self._tracer = None
        if tracer_provider is not None:
            from stockade import __version__

            get_tracer = getattr(tracer_provider, "get_tracer", None)
            if not callable(get_tracer):
                from stockade.errors import PolicyError

                raise PolicyError(
                    "tracer_provider",
                    f"expected an OpenTelemetry TracerProvider, not {type(tracer_provider)!r}",
                )
            self._tracer = get_tracer("stockade", __version__)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextlib.contextmanager
    def span(self, name: str, **attributes: AttributeValue | None) -> Iterator[Span]:
        """Open `name` as the current span (under the caller's) for the block's duration;
        `attributes` are set as `stockade.<name>`."""
        if self._tracer is None:
            yield Span()
            return
        with self._tracer.start_as_current_span(name) as opened:
            span = Span(opened)
            span.set(**attributes)
            yield span

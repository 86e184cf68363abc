"""`python -m stockade.agents.trace FILE [--kind KIND ...]`: print a JSON-lines trace as a
timeline."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import StateError
from ..messages import ENVELOPE_FIELDS
from .events import (
    BaseEvent,
    ErrorEvent,
    FilterEvent,
    HandoffEvent,
    MessageEvent,
    ModelCallEvent,
    RoutingEvent,
    SandboxRunEvent,
    TerminationEvent,
    ToolCallEvent,
)
from .log import Trace

WIDTH = 100


def _short(text: Any, width: int = 60) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _message(e: MessageEvent) -> str:
    m = e.message
    body = {k: v for k, v in m.items() if k != "type" and k not in ENVELOPE_FIELDS}
    text = body.get("content") if m.get("type") == "TextMessage" else json.dumps(body)
    to = ", ".join(m.get("recipients", [])) or "-"
    return f"{m.get('sender')} → {to}  {m.get('type')}: {_short(text)}"


def _routing(e: RoutingEvent) -> str:
    chosen = ", ".join(e.targets) or "nobody"
    by = f" (admin {e.overridden_by} overrode {e.proposed})" if e.overridden_by else ""
    why = f"  [{e.reason}]" if e.reason else ""
    return f"{e.mode}: {e.sender} → {chosen}{by}{why}"


def _model(e: ModelCallEvent) -> str:
    what = e.error or (f"{len(e.tool_calls)} tool call(s)" if e.tool_calls else _short(e.content))
    tokens = f"{e.prompt_tokens}+{e.completion_tokens} tok"
    return f"{e.agent} ← {e.model}  {tokens} {e.latency * 1000:.0f} ms  {what}"


def _tool(e: ToolCallEvent) -> str:
    mark = "ok" if e.ok else "ERROR"
    return f"{e.agent}: {e.tool}({_short(e.arguments, 40)}) {mark} → {_short(e.result, 40)}"


def _sandbox(e: SandboxRunEvent) -> str:
    return f"{e.agent}: {e.language} {e.status} exit={e.exit_code} {e.wall_time:.3f}s"


RENDERERS: dict[type[BaseEvent], Callable[[Any], str]] = {
    MessageEvent: _message,
    RoutingEvent: _routing,
    ModelCallEvent: _model,
    ToolCallEvent: _tool,
    SandboxRunEvent: _sandbox,
    FilterEvent: lambda e: f"{e.agent}: {e.direction} {e.action}  {e.reason}",
    HandoffEvent: lambda e: f"{e.agent}: {'resumed' if e.resumed else 'to human'}  {e.reason}",
    ErrorEvent: lambda e: f"{e.agent}: {e.error_type}: {_short(e.error)}",
    TerminationEvent: lambda e: f"{e.reason} after {e.turns} turn(s)  {e.detail}",
}


KINDS = [cls.model_fields["kind"].default for cls in RENDERERS]


def timeline(trace: Trace, kinds: Sequence[str] = ()) -> list[str]:
    """One line per event: offset from the first event, kind, and a summary."""
    start = trace.events[0].ts if trace.events else 0.0
    lines = []
    for event in trace:
        kind = getattr(event, "kind", "?")
        if kinds and kind not in kinds:
            continue
        summary = RENDERERS[type(event)](event)
        lines.append(f"+{event.ts - start:8.3f}s  {kind:<14} {summary}"[: WIDTH * 2])
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stockade.agents.trace", description=__doc__)
    parser.add_argument("file", help="a JSON-lines trace written by Trace(path) or Trace.write")
    parser.add_argument(
        "--kind",
        action="append",
        default=[],
        choices=KINDS,  # a misspelt kind would otherwise filter out every event, silently
        metavar="KIND",
        help=f"only this kind (repeatable): {', '.join(KINDS)}",
    )
    args = parser.parse_args(argv)
    try:
        trace = Trace.read(args.file)
    except (OSError, StateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in timeline(trace, args.kind):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

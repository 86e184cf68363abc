"""The execution trace: every event of a run, in memory and optionally as a JSON-lines file.
The event types are in `events`.

`Trace(path)` appends each event to `path` as it happens (each line written and closed at once,
so a crash keeps what ran and no file handle outlives the call; a path that cannot be
written is refused with `ConfigError` at once, not at the first event);
`Trace.read(path)` loads a file back; `python -m stockade.agents.trace FILE` prints it as a
timeline. Events also go to the `stockade.agents.trace` logger at DEBUG, so any logging setup
can collect them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pydantic

from ..errors import ConfigError, StateError
from .events import (
    BaseEvent,
    EventAdapter,
)
from .spans import Spans

EVENT_LOGGER_NAME = "stockade.agents.trace"
_logger = logging.getLogger(EVENT_LOGGER_NAME)


class Trace:
    """An ordered list of events; with a `path`, also a JSON-lines file written as it grows;
    with an OpenTelemetry `tracer_provider`, also GenAI spans as the calls happen (`spans`)."""

    def __init__(
        self, path: str | Path | None = None, *, tracer_provider: object | None = None
    ) -> None:
        self.events: list[BaseEvent] = []
        self.spans = Spans(tracer_provider)
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            _check_writable(self.path)

    def record(self, event: BaseEvent) -> BaseEvent:
        event.seq = len(self.events)
        # Serialised first: an event that cannot be (a lone surrogate in a model's text)
        # raises here and is not kept, rather than breaking every later to_jsonl() and write().
        line = event.model_dump_json()
        self.events.append(event)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as sink:
                sink.write(line + "\n")
        _logger.debug(line)
        return event

    def of_kind(self, kind: str) -> list[BaseEvent]:
        return [e for e in self.events if getattr(e, "kind", None) == kind]

    def to_jsonl(self) -> str:
        return "".join(e.model_dump_json() + "\n" for e in self.events)

    def write(self, path: str | Path) -> Path:
        """Write the whole trace to `path` (replacing it) and return the path."""
        target = Path(path)
        target.write_text(self.to_jsonl(), encoding="utf-8")
        return target

    @classmethod
    def read(cls, path: str | Path) -> Trace:
        """Load a JSON-lines trace; a malformed line raises `StateError` naming its number."""
        trace = cls()
        try:
            with Path(path).open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        trace.events.append(_parse_line(line, path, number))
        except UnicodeDecodeError as exc:
            raise StateError(f"{path}: not a trace (not UTF-8 text: {exc.reason})") from None
        return trace

    def __iter__(self) -> Iterator[BaseEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


def _check_writable(path: Path) -> None:
    """Open `path` for appending once, so a bad path is refused now rather than mid-run."""
    try:
        # An open is the only honest test: os.access misses read-only mounts and lies to root.
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"trace={str(path)!r} cannot be written: {exc.strerror or exc}",
            hint="pass a file path in an existing, writable directory",
        ) from None


def _parse_line(line: str, path: str | Path, number: int) -> BaseEvent:
    try:
        event: BaseEvent = EventAdapter.validate_json(line)
    except (pydantic.ValidationError, json.JSONDecodeError) as exc:
        raise StateError(f"{path}:{number}: not a trace event: {exc}") from None
    return event

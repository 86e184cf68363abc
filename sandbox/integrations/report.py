"""What a model reads of a run: one text for every adapter, so a model sees the same thing
whichever framework asked."""

from __future__ import annotations

from stockade import Result

NO_OUTPUT = "(no output)"


def as_text(result: Result) -> str:
    """The run's stdout, then its stderr, then a bracketed note when it did not end well (its
    status, exit code or error), its output was cut, or the sandbox warned."""
    parts = [text.rstrip("\n") for text in (result.stdout, result.stderr) if text.strip()]
    if note := _note(result, status=not result.ok):
        parts.append(note)
    return "\n".join(parts) or NO_OUTPUT


def sandbox_note(result: Result, *, said: tuple[str, ...] = ("ok", "nonzero_exit")) -> str:
    """The same note for adapters whose framework has an exit code but no status: when the
    sandbox, not the program, ended the run (timeout, memory, signal, setup), cut its output,
    or warned; else "". A status in `said` the framework says itself."""
    return _note(result, status=result.status not in said)


def _note(result: Result, *, status: bool) -> str:
    notes = [_status(result)] if status else []
    if result.stdout_truncated or result.stderr_truncated:
        notes.append("output truncated at the output limit")
    notes += result.warnings
    return f"[{'; '.join(notes)}]" if notes else ""


def _status(result: Result) -> str:
    said = f"status {result.status}"
    if result.exit_code:
        said += f", exit code {result.exit_code}"
    if result.signal:
        said += f", signal {result.signal}"
    return f"{said}: {result.error}" if result.error else said


def exit_code(result: Result) -> int:
    """A shell's exit code for the run, as `sandbox run` gives it: the program's own, 124 for
    a timeout, 137 out of memory, 128+N for signal N, 125 when the sandbox could not start."""
    if result.status == "timeout":
        return 124
    if result.status == "memory_limit":
        return 137
    if result.exit_code is not None:
        return result.exit_code
    return 128 + result.signal if result.signal else 125

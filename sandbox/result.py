"""`Result`, what a run did, and `Status`, its outcome in one word.

`make_result` is the one place a run's outcome becomes a Result, whichever way it ran (fresh,
pooled, session); `decode_wait_status` and `describe_end` read and name how a process ended."""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import json
import os
import signal as signal_module
from enum import StrEnum
from typing import Any, NamedTuple, Protocol


class Status(StrEnum):
    OK = "ok"
    NONZERO_EXIT = "nonzero_exit"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    SIGNALED = "signaled"
    SETUP_FAILED = "setup_failed"


def decide_status(
    *,
    setup_failed: bool,
    timed_out: bool,
    oom_killed: bool,
    signal: int | None,
    exit_code: int | None,
) -> Status:
    """The status, by the contract's precedence: setup_failed, timeout, memory_limit,
    signaled, nonzero_exit, ok."""
    if setup_failed:
        return Status.SETUP_FAILED
    # SIGXCPU is how RLIMIT_CPU ends a process: a CPU-time limit, so a timeout.
    if timed_out or signal == signal_module.SIGXCPU:
        return Status.TIMEOUT
    if oom_killed:
        return Status.MEMORY_LIMIT
    if signal is not None:
        return Status.SIGNALED
    if exit_code:
        return Status.NONZERO_EXIT
    return Status.OK


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    """A wait status (as `os.waitpid` gives it) -> (exit code, signal); one of them is None."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


def describe_end(exit_code: int | None, signal: int | None) -> str:
    """How a process ended, for messages: "signal N" or "exit N"."""
    return f"signal {signal}" if signal else f"exit {exit_code}"


class ToolCall(NamedTuple):
    """One call the sandboxed code made to a host tool (`tools=`): the tool's name, its
    arguments as JSON text (by name once bound), the result that went back as JSON text, or
    the error the code got instead, and the seconds it took on the host."""

    tool: str
    arguments: str
    result: str | None
    error: str | None
    duration: float

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "duration": round(self.duration, 6)}


class Result(NamedTuple):
    """What a run did. Times in seconds, memory in bytes; output kept as raw bytes too.
    `files` holds what the run's `collect` brought back out of /workspace (name relative to
    /workspace -> content); `tool_calls` the calls its code made to host tools, in order.

    An immutable record: `_replace(...)` makes a changed copy, `to_dict()` is the contract's
    JSON object. A NamedTuple rather than a dataclass because every `sandbox` command imports
    it: `dataclasses` (with `inspect` and `ast`) would cost a command ~15 ms."""

    status: Status
    exit_code: int | None
    signal: int | None
    stdout_bytes: bytes
    stderr_bytes: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    wall_time: float
    cpu_time: float
    peak_memory: int
    error: str | None = None
    warnings: tuple[str, ...] = ()
    files: dict[str, bytes] = {}  # noqa: RUF012 (make_result gives each Result its own)
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", errors="replace")

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON object (plus `warnings`, `files`: each collected file's name
        and size in bytes, the contents being in `Result.files` or written out by the
        command's --output-dir, and `tool_calls`)."""
        return {
            "status": self.status.value,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "wall_time": round(self.wall_time, 6),
            "cpu_time": round(self.cpu_time, 6),
            "peak_memory": self.peak_memory,
            "error": self.error,
            "warnings": list(self.warnings),
            "files": {name: len(data) for name, data in self.files.items()},
            "tool_calls": [call.to_dict() for call in self.tool_calls],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def exit_status(self) -> int:
        """The exit code the `sandbox` command uses for this result (without --json)."""
        if self.status is Status.SETUP_FAILED:
            return 125
        if self.status is Status.TIMEOUT:
            return 124
        if self.status is Status.MEMORY_LIMIT:
            return 137
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_code or 0


class Captured(Protocol):
    """One stream's captured output: `spawn.capture.Sink`, which this module is below."""

    truncated: bool

    def value(self) -> bytes: ...


def make_result(
    out: Captured,
    err: Captured,
    *,
    exit_code: int | None,
    signal: int | None,
    timed_out: bool,
    oom_killed: bool,
    wall_time: float,
    cpu_time: float,
    peak_memory: int,
    setup_failed: bool = False,
    error: str | None = None,
    warnings: tuple[str, ...] = (),
    files: dict[str, bytes] | None = None,
) -> Result:
    """The Result of a run: its captured output and what ended it, the status decided by
    the contract's precedence. Every way of running (fresh, pooled, session) ends here."""
    status = decide_status(
        setup_failed=setup_failed,
        timed_out=timed_out,
        oom_killed=oom_killed,
        signal=signal,
        exit_code=exit_code,
    )
    return Result(
        status=status,
        exit_code=None if status is Status.SETUP_FAILED else exit_code,
        signal=signal,
        stdout_bytes=out.value(),
        stderr_bytes=err.value(),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        wall_time=wall_time,
        cpu_time=cpu_time,
        peak_memory=peak_memory,
        error=error,
        warnings=warnings,
        files={} if files is None else files,
    )

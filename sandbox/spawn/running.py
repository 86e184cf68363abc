"""A started run: `Sandbox.start` returns one, and `Sandbox.run` is built on it.

A `Running` is an ordinary sandbox run (every protection of the security contract applies)
whose stdio the caller holds as raw file descriptors instead of having them captured: write
to `stdin`, read `stdout` and `stderr`, then `wait()` for the `Result`. `kill()` ends it early:
the supervisor watches its reply channel, and its end of file stops the run, which is also
what happens when the caller dies. The supervisor's first message, `Started`, carries the
run's cgroup, so a long-lived run (a pooled interpreter, a session) can be accounted for.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable

from stockade.errors import SetupError, UnsupportedError
from stockade.result import Result, make_result
from stockade.spawn import server as forkserver
from stockade.spawn.call import Stdio
from stockade.spawn.capture import Sink, pump
from stockade.spawn.pipes import NearEnds, hand_over_pipes
from stockade.spawn.plan import RunPlan
from stockade.spawn.supervisor import RunReport, Started, unframe


class Running(NearEnds):
    """A run in progress, holding the near ends of its pipes (`pipes.NearEnds`). Not
    thread-safe: one owner at a time."""

    def __init__(
        self,
        reply: socket.socket,
        pid: int | None,
        stdin: int | None,
        stdout: int,
        stderr: int,
        output_limit: int,
    ) -> None:
        super().__init__(stdin, stdout, stderr)  # its fds are ours until closed, or given to pump
        self._reply: socket.socket | None = reply
        self._pid = pid  # the supervisor when it is our own child, to reap
        self._output_limit = output_limit
        self._pending = b""
        self._started: Started | None = None
        self._report: RunReport | None = None

    def started(self) -> Started | None:
        """Wait until the supervisor has forked the run; None if setup failed before that."""
        while self._started is None and self._report is None and self._reply is not None:
            self._receive()
        return self._started

    def kill(self) -> None:
        """Ask the supervisor to kill the run now (idempotent; `wait()` still reports). Safe
        from another thread than the owner's."""
        reply = self._reply
        if reply is not None:
            with contextlib.suppress(OSError):
                reply.shutdown(socket.SHUT_WR)

    def wait(self) -> Result:
        """Wait for the end of the run and return its Result. The output the caller did not
        read stays in the pipes: this Result's stdout and stderr are empty."""
        report = self.report()
        empty = Sink(self._output_limit)
        return report_result(report, empty, empty)

    def report(self) -> RunReport:
        """Wait for the supervisor's `RunReport` (reaping it when it is our child)."""
        while self._reply is not None:  # the report is its last message: read to the end
            self._receive()
        if self._report is None:
            self._report = _lost()
        return self._report

    def close(self) -> None:
        """Kill the run if it is still going, wait for it, and close every fd."""
        self.kill()
        self.report()
        self._close_fds()
        self.stdin = None

    def __del__(self) -> None:
        # Dropped unclosed, as a Popen may be: its fds go now. Its supervisor, whose channel
        # closes with it, ends the run and exits; the next start() reaps it, never blocking here.
        self._close_fds()
        if self._pid is not None:
            _DROPPED.append(self._pid)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def capture(self, feed: bytes, out: Sink, err: Sink) -> Result:
        """The `Sandbox.run` path: feed stdin, keep capped output, collect the report. Hands
        every fd to `pump`, which closes them."""
        assert self._reply is not None and not self._pending
        # pump reads a copy: the socket stays ours meanwhile, for kill() from another thread
        reply_fd, self._fds_ours = os.dup(self._reply.fileno()), False
        try:
            reply = pump(
                stdin=feed,
                stdin_fd=self.stdin,
                stdout_fd=self.stdout,
                stderr_fd=self.stderr,
                reply_fd=reply_fd,
                stdout=out,
                stderr=err,
            )
        finally:  # interrupted (Ctrl-C) too: the closed channel has the supervisor end the run
            self._finish_reply()
        self._take(reply)
        return report_result(self._report or _lost(), out, err)

    def _receive(self) -> None:
        try:
            chunk = self._reply.recv(65536) if self._reply is not None else b""
        except OSError:  # the supervisor (or the spawn server) is gone
            chunk = b""
        self._take(chunk)
        if not chunk:
            self._finish_reply()

    def _take(self, data: bytes) -> None:
        messages, self._pending = unframe(self._pending + data)
        for message in messages:
            if isinstance(message, Started):
                self._started = message
            elif isinstance(message, RunReport):
                self._report = message

    def _finish_reply(self) -> None:
        if self._reply is not None:
            self._reply.close()
            self._reply = None
        self._reap()

    def _reap(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = None


Launch = Callable[[RunPlan, Stdio], forkserver.Launched]


def start(
    plan: RunPlan,
    stdin: int | None,
    output_limit: int,
    launch: Launch = forkserver.launch,
    tools: int | None = None,
) -> Running:
    """Start `plan` with fresh pipes for stdout and stderr. `stdin` is an fd to hand over, or
    None for a pipe whose write end becomes `Running.stdin`. `launch` starts its supervisor
    (a fresh one, or a prepared one: prepared.py). `tools` is the sandbox's end of a host
    callback channel (callbacks/), handed to the workload as its fd 3; the caller keeps
    its own copy."""
    _reap_dropped()
    extra = (tools,) if tools is not None else ()
    launched, stdin_w, stdout_r, stderr_r = hand_over_pipes(
        stdin, lambda stdio: launch(plan, stdio + extra)
    )
    return Running(launched.reply, launched.pid, stdin_w, stdout_r, stderr_r, output_limit)


_DROPPED: list[int] = []  # supervisors of runs dropped unclosed, to reap


def _reap_dropped() -> None:
    for pid in list(_DROPPED):
        with contextlib.suppress(ChildProcessError):  # reaped already
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue  # still ending
        with contextlib.suppress(ValueError):  # another thread took it off meanwhile
            _DROPPED.remove(pid)


def _lost() -> RunReport:
    error = SetupError("supervisor", 0, "the supervisor ended without a report")
    return RunReport(setup_error=str(error))


def report_result(report: RunReport, out: Sink, err: Sink) -> Result:
    """The Result of a run from its supervisor's report and its captured output; raises
    UnsupportedError when the machine lacked what the run needs (nothing of it ran)."""
    if report.unsupported is not None:
        raise UnsupportedError(*report.unsupported)
    return make_result(
        out,
        err,
        setup_failed=report.setup_error is not None,
        timed_out=report.timed_out,
        oom_killed=report.oom_killed,
        signal=report.signal,
        exit_code=report.exit_code,
        wall_time=report.wall_time,
        cpu_time=report.cpu_time,
        peak_memory=report.peak_memory,
        error=report.setup_error or report.exec_error,
        warnings=report.warnings,
        files=report.files,
    )

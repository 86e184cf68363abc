"""A command in a workspace, from the host: its keeper's socket and its pipes.

Each command's keeper (guest/agent.py) answers on a SOCK_SEQPACKET socket of the command's
own: "started", then "done" with the wait status and how it ended, then end of file. The
host's end of file on that socket (`kill()`) tells the keeper to end the command's whole tree.
What comes from inside is untrusted: messages are bounded JSON, checked before use, and a
keeper that does not answer in time is given up on (`GRACE`).

`Keeper` is the raw end (the stdio fds, `kill`, `report`), shaped like `running.Running` so a
workspace's Python session runs on it (warm/host.py); `Command` adds captured and streamed
output and the Result: `Workspace.exec` runs one to its end, `Workspace.start` returns one.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

from stockade.errors import PolicyError, WorkspaceError
from stockade.result import Result
from stockade.spawn.capture import Sink
from stockade.spawn.pipes import NearEnds
from stockade.spawn.running import report_result
from stockade.spawn.supervisor import RunReport, Started
from stockade.warm.host import MESSAGE, Meter, decode_status

GRACE = 5.0  # seconds past a command's timeout before the host stops waiting for its keeper
_CHUNK = 65536
Output = Callable[[bytes], None]


class Keeper(NearEnds):
    """The host's end of one command: the keeper's socket and the near ends of the command's
    pipes (`stdin` is None when the caller's bytes are fed by `Command`). Shaped as
    `running.Running`."""

    def __init__(
        self,
        reply: socket.socket,
        stdin: int | None,
        stdout: int,
        stderr: int,
        argv: tuple[str, ...],
        ended: Callable[[], str | None],
        warnings: tuple[str, ...] = (),
    ) -> None:
        super().__init__(stdin, stdout, stderr)
        self.reply: socket.socket | None = reply
        self.argv, self.warnings, self.ended = argv, warnings, ended
        self.began = time.monotonic()
        self.answers: dict[str, dict[str, object]] = {}

    def kill(self) -> None:
        """Tell the keeper to end the command's tree now; safe from any thread, idempotent."""
        reply = self.reply
        if reply is not None:
            with contextlib.suppress(OSError):
                reply.shutdown(socket.SHUT_WR)

    def receive(self) -> bool:
        """Take one answer; False at the end (the keeper is done, or gone)."""
        try:
            data = self.reply.recv(MESSAGE) if self.reply is not None else b""
        except OSError:
            data = b""
        if not data:
            if self.reply is not None:
                self.reply.close()
                self.reply = None
            return False
        with contextlib.suppress(ValueError):
            message = json.loads(data)
            if isinstance(message, dict) and message.get("op") in ("started", "done"):
                self.answers.setdefault(str(message["op"]), message)
        if "done" in self.answers:  # its last word: no need to wait for its exit
            self.reply.close()  # type: ignore[union-attr]
            self.reply = None
            return False
        return True

    def started(self) -> Started | None:
        """Wait until the command runs; None if it could not be started."""
        while "started" not in self.answers and "done" not in self.answers and self.receive():
            pass
        return Started(None, self.warnings) if "started" in self.answers else None

    def report(self, deadline: float | None = None) -> RunReport:
        """Wait for the keeper's end (until `deadline`, then give up on it) and say how the
        command ended."""
        while self.reply is not None:
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0 or not select.select([self.reply], [], [], wait)[0]:
                    break
            self.receive()
        return self._report()

    def close(self) -> None:
        """End the command if it runs, give up on its keeper, close every fd."""
        self.kill()
        if self.reply is not None:
            self.reply.close()
            self.reply = None
        self._close_fds()

    def _report(self) -> RunReport:
        done = self.answers.get("done")
        wall = time.monotonic() - self.began
        if done is None:
            gone = self.ended()
            if gone is not None:
                raise WorkspaceError(gone)
            why = "the command's keeper ended without a report (killed from inside?)"
            if self.reply is not None:
                why = "the command's keeper did not end it in time"
            return RunReport(
                signal=signal.SIGKILL,
                exec_error=why,
                timed_out=self.reply is not None,
                wall_time=wall,
                warnings=self.warnings,
            )
        return _from_done(done, self.argv, self.warnings, wall)


def _from_done(
    done: dict[str, object], argv: tuple[str, ...], warnings: tuple[str, ...], wall: float
) -> RunReport:
    error = done.get("error")
    if isinstance(error, dict):
        reason = f"cannot start the command: {str(error.get('message'))[:400]}"
        return RunReport(setup_error=reason, wall_time=wall, warnings=warnings)
    why = done.get("why")
    exit_code, signum = decode_status(done.get("status"))
    if why is not None:
        exit_code, signum = None, signal.SIGKILL
    setup_error = exec_error = None
    failed = done.get("failed")
    if isinstance(failed, dict):
        number = failed.get("errno")
        cause = os.strerror(number) if isinstance(number, int) else "failed"
        if failed.get("step") == "exec":
            exec_error = f"cannot execute {argv[0]!r}: {cause}"
        else:
            setup_error = f"cannot start the command: {str(failed.get('step'))[:20]}: {cause}"
    return RunReport(
        exit_code=exit_code,
        signal=signum,
        setup_error=setup_error,
        exec_error=exec_error,
        timed_out=why in ("timeout", "cpu"),
        wall_time=_number(done, "wall") or wall,
        cpu_time=_number(done, "cpu"),
        peak_memory=int(_number(done, "maxrss")),
        warnings=warnings,
    )


def _number(message: dict[str, object], key: str) -> float:
    value = message.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e15:
        return float(value)
    return 0.0


class Stream:
    """One stream of a command's output: kept up to the output limit (for the Result and
    for iterating), and handed whole to a callback as it comes. Iterate to get its chunks
    as they come, until the command's end."""

    def __init__(self, limit: int, callback: Output | None) -> None:
        self.sink = Sink(limit)
        self.callback = callback
        self.done = False
        self._changed = threading.Condition()

    def add(self, data: bytes) -> None:
        if self.callback is not None:
            self.callback(data)
        with self._changed:
            self.sink.add(data)
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self.done = True
            self._changed.notify_all()

    def __iter__(self) -> Iterator[bytes]:
        taken = 0
        while True:
            with self._changed:
                while not self.done and len(self.sink.chunks) <= taken:
                    self._changed.wait()
                chunks = self.sink.chunks[taken:]
                done = self.done
            taken += len(chunks)
            yield from chunks
            if done and not chunks:
                return


class Command:
    """A command running in a workspace (`Workspace.start`). `stdout` and `stderr` are
    iterators over its output as it comes (kept up to the policy's output limit; callbacks
    given to `start` get all of it); `write` feeds its stdin, `close_stdin` ends it;
    `kill()` ends its whole process tree; `wait()` returns its Result."""

    def __init__(
        self,
        keeper: Keeper,
        *,
        feed: bytes | None,
        limit: int,
        timeout: float | None,
        meter: Meter,
        on_stdout: Output | None = None,
        on_stderr: Output | None = None,
    ) -> None:
        self._keeper, self._meter = keeper, meter
        self.stdout, self.stderr = Stream(limit, on_stdout), Stream(limit, on_stderr)
        self._feed = memoryview(feed) if feed is not None else None
        self._deadline = keeper.began + timeout + GRACE if timeout else None
        self._oom_before = meter.oom_kills() or 0
        self._result: Result | None = None
        self._error: BaseException | None = None  # what ended the reading in the background
        self._thread: threading.Thread | None = None
        self._stdin_lock = threading.Lock()

    @property
    def argv(self) -> tuple[str, ...]:
        return self._keeper.argv

    def write(self, data: bytes) -> None:
        """Write to the command's stdin (blocking while its pipe is full)."""
        with self._stdin_lock:
            fd = self._keeper.stdin if self._feed is None else None
            if fd is None:
                raise PolicyError("stdin", "this command's stdin is closed or was given as bytes")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

    def close_stdin(self) -> None:
        """End of file on the command's stdin."""
        with self._stdin_lock:
            if self._feed is None and self._keeper.stdin is not None:
                os.close(self._keeper.stdin)
                self._keeper.stdin = None

    def kill(self) -> None:
        """End the command's whole process tree now (idempotent); `wait()` still reports."""
        self._keeper.kill()

    def wait(self) -> Result:
        """Wait for the command's end and return its Result (output up to the limit)."""
        if self._thread is not None:
            self._thread.join()
            if self._error is not None:
                raise self._error
        else:
            self._run()
        assert self._result is not None
        return self._result

    def background(self) -> Command:
        """Read the output in a thread of its own, so that the caller's is free."""
        self._thread = threading.Thread(target=self._behind, name="stockade-command", daemon=True)
        self._thread.start()
        return self

    def _behind(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the workspace's end, a callback's error: for wait()
            self._error = exc

    def _run(self) -> None:
        if self._result is not None:
            return
        try:
            self._pump()
            report = self._keeper.report(self._deadline)
            oom = (self._meter.oom_kills() or 0) > self._oom_before and report.signal == 9
            if oom and not report.timed_out and report.exec_error is None:
                report = report._replace(oom_killed=True)
            self._result = report_result(report, self.stdout.sink, self.stderr.sink)
        finally:
            self.stdout.close()
            self.stderr.close()
            with self._stdin_lock:  # write() and close_stdin() use the fd under it
                self._keeper.close()

    def _pump(self) -> None:
        """Feed stdin, read the output and the keeper's answers until all have ended (or
        the keeper is given up on)."""
        keeper = self._keeper
        streams = {keeper.stdout: self.stdout, keeper.stderr: self.stderr}
        poller = select.poll()
        for fd in streams:
            os.set_blocking(fd, False)
            poller.register(fd, select.POLLIN)
        assert keeper.reply is not None
        poller.register(keeper.reply, select.POLLIN)
        stdin = keeper.stdin if self._feed is not None else None
        if stdin is not None:
            os.set_blocking(stdin, False)
            poller.register(stdin, select.POLLOUT)
        reply, open_ = keeper.reply.fileno(), len(streams) + 1
        while open_:
            wait = None if self._deadline is None else self._deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return
            for fd, _ in poller.poll(None if wait is None else wait * 1000):
                if fd == stdin:
                    if not self._write_some(stdin):
                        poller.unregister(stdin)
                        stdin = None
                elif fd == reply:
                    if not keeper.receive():
                        poller.unregister(fd)
                        open_ -= 1
                else:
                    data = _read(fd)
                    if data:
                        streams[fd].add(data)
                    elif data is not None:
                        poller.unregister(fd)
                        open_ -= 1

    def _write_some(self, fd: int) -> bool:
        """Feed what fits; False once all is fed (or the command closed its stdin)."""
        assert self._feed is not None
        try:
            self._feed = self._feed[os.write(fd, self._feed[:_CHUNK]) :]
        except BlockingIOError:
            return True
        except BrokenPipeError:
            self._feed = memoryview(b"")
        if self._feed:
            return True
        os.close(fd)
        self._keeper.stdin = None
        return False


def _read(fd: int) -> bytes | None:
    """What is there (b"" at the end; None: nothing now)."""
    try:
        return os.read(fd, _CHUNK)
    except BlockingIOError:
        return None

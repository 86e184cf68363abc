"""The host's end of a run's tool channel: it serves the calls the sandboxed code makes.

A `Broker` owns one unix stream socketpair: the sandbox's end goes to the workload (its fd 3,
or beside a pooled run's request), the host's end is read here, in a thread of the caller
(started once the run is, so that the fork that starts it stays single-threaded). The channel
goes straight from the caller to the workload: the supervisor and the run's init only pass
the fd on.

Each frame is a 4-byte length and that many bytes of JSON, bounded by `limits.tool_payload`
each way. A call names a tool and its arguments; the tool is looked up among the run's own
(nothing else can be reached), its arguments bound and validated by its pydantic model, and
the function runs, for at most `limits.tool_time`: a sync one right in the serving thread (a
hop to another thread costs more than the call), watched by a watchdog thread that answers
for it at its deadline and hands the channel to a new serving thread; an async one on the
caller's event loop (`arun_code`, `Session.arun`), else on the broker's own, cancelled at its
deadline. The answer is its result as JSON, or an error (kind and message: never a
traceback, never a pickle). `limits.tool_calls` bounds the calls of a run. Whatever the guest
sends (not JSON, not a call, an unknown tool, a frame over the bound) gets an error or closes
the channel; it never raises here. The socket is read with recv(), so fds sent along with a
frame (SCM_RIGHTS) are discarded by the kernel, never received.

Calls are taken only between `begin()` and `end()` (a run, or one call of a session): a
thread a session's call left behind gets an error after it. Every call taken is recorded as a
`ToolCall` for the Result and, with tracing, is a `stockade.tool_call` span under the span
that was current at `begin()` (the run's or the session call's).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import json
import socket
import struct
import threading
import time
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic_core

from stockade.callbacks.guest import stockade_tools as guest
from stockade.result import Result, ToolCall
from stockade.telemetry import Tracing

if TYPE_CHECKING:
    from stockade.callbacks.tools import HostTool, Tools, Toolset
    from stockade.policy.model import Limits

HEADER = struct.Struct("!I")
SPEC_VARIABLE, FD_VARIABLE = guest.SPEC_VARIABLE, guest.FD_VARIABLE
# Run inside as source (`python3 -c`, or exec'd by the zygote): the package is not visible there.
GUEST_SOURCE = Path(find_spec(guest.__name__).origin).read_text(encoding="utf-8")  # type: ignore[arg-type]
WORKLOAD_FD = 3  # where a fresh run's or a session's workload finds the channel
_MESSAGE = 2000  # characters of an error message that cross at most
_WATCH_PERIOD = 0.05  # seconds between the watchdog's looks at a running sync tool


def for_tools(tools: Tools, limits: Limits, tracing: Tracing | None = None) -> Broker:
    """The broker of a run (or a session) given `tools=`: checked, bounded by `limits`."""
    from stockade.callbacks.tools import plan_tools

    return Broker(plan_tools(tools, limits.tool_payload), limits, tracing)


class _Closed(Exception):
    """The channel is closed, or the guest broke its framing: stop serving."""


class _Failed(Exception):
    """The tool raised, or ran out of time: the code gets this message."""


class _Abandoned(Exception):
    """The watchdog answered for this sync call at its deadline: its thread stops serving."""


class _Watch:
    """A sync tool running in the serving thread, as the watchdog sees it."""

    def __init__(self, ident: int, name: str, arguments: str, epoch: int, limit: float) -> None:
        self.ident, self.name, self.arguments, self.epoch = ident, name, arguments, epoch
        self.started = time.monotonic()
        self.deadline = self.started + limit
        self.abandoned = False


class Broker:
    """One run's (or one session's) tool channel and the thread that serves it."""

    def __init__(self, tools: Toolset, limits: Limits, tracing: Tracing | None = None) -> None:
        self.tools = tools
        self.tracing = tracing or Tracing()
        self._context: contextvars.Context | None = None  # the caller's, for the spans
        self.calls, self.payload, self.time = (
            limits.tool_calls,
            limits.tool_payload,
            limits.tool_time,
        )
        self._host, self.guest = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._open = False  # taking calls: a run, or a session's call, is going on
        self._epoch = 0
        self._records: list[ToolCall] = []
        self._count = self._refused = self._kept = 0
        self._kept_most = limits.output  # bytes of arguments and results the records keep
        self._loop: asyncio.AbstractEventLoop | None = None  # the caller's, for async tools
        self._own_loop: asyncio.AbstractEventLoop | None = None  # else this one, inline
        self._pending: asyncio.Task[Any] | concurrent.futures.Future[Any] | None = None
        self._watch: _Watch | None = None
        self._stopped = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._thread: threading.Thread | None = None

    def environment(self, fd: int | None = WORKLOAD_FD) -> dict[str, str]:
        """The variables the guest module reads: the tools, and the channel's fd when known
        (a pooled run's child sets it itself)."""
        env = {SPEC_VARIABLE: self.tools.spec()}
        return env | ({FD_VARIABLE: str(fd)} if fd is not None else {})

    def start(self) -> None:
        """Serve, from now on, in a thread: call it once the run is started (a thread in the
        caller sends the next fresh run's fork to the spawn server)."""
        self._thread = threading.Thread(target=self._serve, name="stockade-tools", daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def begin(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Take calls (a run or a session's call starts); async tools run on `loop`, the
        caller's, when it gives one."""
        with self._lock:
            self._open, self._loop = True, loop
            self._records, self._count, self._refused, self._kept = [], 0, 0, 0
            self._context = contextvars.copy_context() if self.tracing.enabled else None

    def end(self) -> tuple[tuple[ToolCall, ...], tuple[str, ...]]:
        """Take no more calls; the calls taken since `begin`, and warnings."""
        with self._lock:
            self._open, self._loop = False, None
            self._epoch += 1
            warnings = []
            if self._refused:
                warnings.append(
                    f"{self._refused} tool calls refused past limits.tool_calls ({self.calls})"
                )
            if self._kept > self._kept_most:
                warnings.append(
                    "tool call records past limits.output bytes keep no arguments or results"
                )
            return tuple(self._records), tuple(warnings)

    def settle(self, result: Result) -> Result:
        """`end`, and `result` with the calls it took and the warnings about them."""
        calls, warnings = self.end()
        return result._replace(tool_calls=calls, warnings=result.warnings + warnings)

    def close(self) -> None:
        """Stop serving and release everything; idempotent. A sync tool still running goes
        on in its thread to its end (Python cannot stop it), unheard; an async one is
        cancelled."""
        self.end()
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._host.shutdown(socket.SHUT_RDWR)
        with self._lock:
            busy, self._watch = self._watch, None
            if busy is not None:
                busy.abandoned = True  # its thread stops when the tool returns
            pending = self._pending
        if pending is not None:
            _cancel(pending, self._own_loop)
        # Not a serving thread inside a sync tool: it ends when the tool returns.
        joined = (self._watchdog,) if busy is not None else (self._thread, self._watchdog)
        for thread in joined:
            if thread is not None and thread is not threading.current_thread():
                thread.join()
        self._host.close()
        self.guest.close()
        if self._own_loop is not None and busy is None:
            self._own_loop.close()

    # ------------------------------------------------------------------ serving

    def _serve(self) -> None:
        try:
            while True:
                answer = self._answer(self._read())
                if answer is None:
                    return  # the watchdog answered for our call, and a new thread serves
                with self._send_lock:
                    self._host.sendall(answer)
        except _Closed:  # the guest's end closed, or it broke the framing: it sees the end
            with contextlib.suppress(OSError):
                self._host.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read(self) -> bytes:
        size = HEADER.unpack(self._exactly(HEADER.size))[0]
        if size > self.payload:
            # The guest module never sends one: the code wrote on the channel itself. Its
            # framing cannot be trusted any more.
            why = f"a message of {size} bytes, over limits.tool_payload ({self.payload})"
            self._send(_frame({"id": None, "error": _error("protocol", why)}))
            raise _Closed
        return self._exactly(size)

    def _exactly(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = self._host.recv(min(size, 1 << 20))
            if not chunk:
                raise _Closed
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _send(self, data: bytes) -> None:
        with self._send_lock, contextlib.suppress(OSError):
            self._host.sendall(data)

    def _answer(self, data: bytes) -> bytes | None:
        try:
            request = json.loads(data)
        except (ValueError, RecursionError):
            return _frame({"id": None, "error": _error("protocol", "a message that is not JSON")})
        ident = request.get("id") if isinstance(request, dict) else None
        ident = ident if isinstance(ident, int) and not isinstance(ident, bool) else None
        name, args, kwargs = _parts(request)
        if ident is None or name is None:
            why = 'a message that is not a call {"id": int, "tool": str, "args": [], "kwargs": {}}'
            return _frame({"id": ident, "error": _error("protocol", why)})
        with self._lock:
            if not self._open:
                why = f"{name}: the run this call came from has ended"
                return _frame({"id": ident, "error": _error("ended", why)})
            if self._count >= self.calls:
                self._refused += 1
                why = f"{name}: over limits.tool_calls ({self.calls} calls in this run)"
                return _frame({"id": ident, "error": _error("limit", why)})
            self._count += 1
            epoch = self._epoch
        started = time.monotonic()
        try:
            if self._context is None:
                arguments, result, error = self._call(ident, epoch, name, args, kwargs)
            else:  # a copy each time: an abandoned call's thread may still be in the last
                traced = self._context.copy()
                arguments, result, error = traced.run(
                    self._traced, ident, epoch, name, args, kwargs
                )
        except _Abandoned:
            return None
        answer = _frame({"id": ident, "error": error}) if error else _result(ident, result)
        if error is None and len(answer) > HEADER.size + self.payload:
            error = _error("limit", f"{name}: the result is {len(result or '')} bytes, over "
                           f"limits.tool_payload ({self.payload})")  # fmt: skip
            answer, result = _frame({"id": ident, "error": error}), None
        self._record(epoch, name, arguments, result, error, time.monotonic() - started)
        return answer

    def _traced(
        self, ident: int, epoch: int, name: str, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[str, str | None, dict[str, str] | None]:
        with self.tracing.span("stockade.tool_call", tool=name) as span:
            arguments, result, error = self._call(ident, epoch, name, args, kwargs)
            span.set(ok=error is None, error=error["message"] if error else None)
            return arguments, result, error

    def _call(
        self, ident: int, epoch: int, name: str, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[str, str | None, dict[str, str] | None]:
        """(the arguments as JSON text, the result as JSON text, the error)."""
        tool = self.tools.tools.get(name)
        arguments = json.dumps({"args": args, "kwargs": kwargs} if args else kwargs)
        if tool is None:
            known = ", ".join(self.tools.tools) or "none"
            return arguments, None, _error("argument", f"no tool named {name!r}; tools: {known}")
        try:
            bound = tool.bind(args, kwargs)
            arguments = json.dumps(bound)
            checked = tool.validate(bound)
        except ValueError as exc:
            return arguments, None, _error("argument", f"{name}: {exc}")
        try:
            if tool.is_async:
                value = self._run_async(tool, checked)
            else:
                value = self._run_sync(
                    tool, checked, _Watch(ident, name, arguments, epoch, self.time)
                )
        except _Failed as exc:
            return arguments, None, _error("tool", f"{name}: {exc}")
        try:
            text = json.dumps(pydantic_core.to_jsonable_python(value), allow_nan=False)
        except (TypeError, ValueError, pydantic_core.PydanticSerializationError) as exc:
            why = f"{name} returned what JSON cannot hold ({type(value).__name__}): {exc}"
            return arguments, None, _error("tool", why)
        return arguments, text, None

    def _run_sync(self, tool: HostTool, arguments: dict[str, Any], watch: _Watch) -> Any:
        with self._lock:
            self._watch = watch
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._guard, name="stockade-tools-watchdog", daemon=True
                )
                self._watchdog.start()
        try:
            value = tool.call(arguments)
        except Exception as exc:  # the tool's own failure: news for the code, not for us
            value, failure = None, exc
        else:
            failure = None
        with self._lock:
            if self._watch is watch:
                self._watch = None
            if watch.abandoned:
                raise _Abandoned
        if failure is not None:
            raise _Failed(f"{type(failure).__name__}: {failure}")
        if inspect.isawaitable(value):
            getattr(value, "close", lambda: None)()
            raise _Failed("returned an awaitable: declare the tool `async def`")
        return value

    def _guard(self) -> None:
        """The watchdog: a sync tool past its deadline gets its answer (an error) from here,
        and the channel a new serving thread; the old one stops when the tool returns."""
        while not self._stopped.wait(_WATCH_PERIOD):
            with self._lock:
                watch = self._watch
                if watch is None or time.monotonic() < watch.deadline:
                    continue
                watch.abandoned, self._watch = True, None
            why = f"{watch.name}: took longer than limits.tool_time ({self.time:g} s)"
            error = _error("tool", why)
            self._record(watch.epoch, watch.name, watch.arguments, None, error,
                         time.monotonic() - watch.started)  # fmt: skip
            self._send(_frame({"id": watch.ident, "error": error}))
            if not self._stopped.is_set():
                self.start()

    def _run_async(self, tool: HostTool, arguments: dict[str, Any]) -> Any:
        loop = self._loop
        try:
            if loop is not None and loop.is_running():  # the caller's (arun): a hop to it
                future = asyncio.run_coroutine_threadsafe(tool.call(arguments), loop)
                self._pending = future
                return future.result(self.time)
            if self._own_loop is None:
                self._own_loop = asyncio.new_event_loop()
            task = self._own_loop.create_task(asyncio.wait_for(tool.call(arguments), self.time))
            self._pending = task
            return self._own_loop.run_until_complete(task)
        except TimeoutError:  # asyncio's and concurrent.futures' are this one since 3.11
            if self._pending is not None:
                _cancel(self._pending, self._own_loop)
            raise _Failed(f"took longer than limits.tool_time ({self.time:g} s)") from None
        except (asyncio.CancelledError, concurrent.futures.CancelledError):
            raise _Failed("the run ended during the call") from None
        except Exception as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from None
        finally:
            self._pending = None

    def _record(
        self,
        epoch: int,
        name: str,
        arguments: str,
        result: str | None,
        error: dict[str, str] | None,
        seconds: float,
    ) -> None:
        with self._lock:
            if epoch != self._epoch:
                return  # its run ended meanwhile: the record went with it
            self._kept += len(arguments) + len(result or "")
            if self._kept > self._kept_most:
                arguments, result = "", None
            message = error["message"] if error else None
            self._records.append(ToolCall(name, arguments, result, message, seconds))


def _cancel(
    pending: asyncio.Task[Any] | concurrent.futures.Future[Any],
    loop: asyncio.AbstractEventLoop | None,
) -> None:
    if isinstance(pending, concurrent.futures.Future):
        pending.cancel()  # chained: cancels the task on the caller's loop
    elif loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(pending.cancel)


def _parts(request: object) -> tuple[str | None, list[Any], dict[str, Any]]:
    if not isinstance(request, dict):
        return None, [], {}
    name, args, kwargs = request.get("tool"), request.get("args", []), request.get("kwargs", {})
    if not isinstance(name, str) or not isinstance(args, list) or not isinstance(kwargs, dict):
        return None, [], {}
    return name[:100], args, kwargs


def _error(kind: str, message: str) -> dict[str, str]:
    return {"kind": kind, "message": message[:_MESSAGE]}


def _frame(message: dict[str, Any]) -> bytes:
    data = json.dumps(message).encode()
    return HEADER.pack(len(data)) + data


def _result(ident: int, text: str | None) -> bytes:
    data = b'{"id":%d,"result":%s}' % (ident, (text or "null").encode())
    return HEADER.pack(len(data)) + data

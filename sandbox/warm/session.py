"""Stateful sessions: one sandboxed Python interpreter that keeps its variables between calls.

    with box.session() as s:
        s.run("x = 1")
        s.run("print(x)").stdout == "1\n"

A session is an ordinary sandbox run (the whole security contract applies) whose workload is
`zygote.py` in session mode: each call's code is exec()'d in one persistent `__main__` of that
interpreter, as a notebook kernel does (a call that ends with an expression shows its repr).

Per-call limits: at the call's timeout (wall clock) or CPU time, the interpreter interrupts the
call with SIGINT (a KeyboardInterrupt: the call's status is `timeout`, the session and its
state survive). Code that ignores or blocks that (it catches it, or sits in C code) is killed
with its whole sandbox `grace` seconds later, and the call raises `SessionError`: the state is
lost. The same holds when the interpreter dies otherwise (out of memory, `os._exit`). Memory,
processes and the rest are limited for the whole session, as for one run; output is capped per
call, and what the code writes between calls (from a background thread) is dropped.

A session serialises its calls: it may be shared between threads, and `arun` suits asyncio.

Files: `read_file`, `write_file` and `list_files` reach the session's /workspace and /tmp.
The interpreter does the opening, inside the sandbox, one name at a time and never following
a link; it runs the session's code too, so what it answers is taken as untrusted data:
checked, and capped by the policy's `limits.collect_size`.
"""

from __future__ import annotations

import asyncio
import marshal
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from stockade.callbacks.broker import for_tools
from stockade.errors import PolicyError, SessionError
from stockade.result import Result, describe_end, make_result
from stockade.spawn.capture import Sink
from stockade.spawn.collect import Collected
from stockade.spawn.plan import check_files, check_inside  # the same checks as any run
from stockade.telemetry import Span, Tracing
from stockade.warm import host as interpreter
from stockade.warm.host import Inside, Outcome, StartFailed, Warm

if TYPE_CHECKING:
    from stockade.callbacks.tools import Tools
    from stockade.spawn.plan import Planner

LIFETIME = 3_600.0  # seconds a session may live, by default
GRACE = 1.0  # seconds between the interrupt at a call's deadline and the hard kill
_SIGINT, _SIGKILL = 2, 9
IDLE_CPU_EXIT = 86  # the interpreter's exit when threads used up CPU between calls (zygote.py)


class Session:
    """One stateful interpreter in a sandbox of its own. Use `Sandbox.session()`."""

    def __init__(
        self,
        planner: Planner,
        *,
        timeout: float | None = None,
        grace: float = GRACE,
        lifetime: float = LIFETIME,
        env: Mapping[str, str] | None = None,
        preload: Sequence[str] = (),
        tracing: Tracing | None = None,
        tools: Tools | None = None,
        inside: Inside | None = None,
    ) -> None:
        """`tools`: host functions the session's code may call (callbacks/); their channel is
        the interpreter's fd 3, served only while a call of the session runs. `inside`: run
        the interpreter in a sandbox that exists already (a workspace's, `Workspace.python`)
        rather than in one of its own."""
        if timeout is not None and not 0 < timeout <= lifetime:
            raise PolicyError("timeout", f"a call's timeout must be in (0, {lifetime}] seconds")
        if not 0 < lifetime <= 86_400 or grace < 0:
            raise PolicyError("lifetime", "a session lives for (0, 86400] seconds; grace >= 0")
        interpreter.check(planner, preload)
        self.planner = planner
        self.timeout = timeout or planner.policy.limits.timeout
        self.grace = grace
        self._lock = threading.Lock()
        self._ended: str | None = None
        self._closing = False
        self.tracing = tracing or Tracing()
        self.id = os.urandom(6).hex()  # names the session's spans
        self._broker = broker = (
            for_tools(tools, planner.policy.limits, self.tracing) if tools is not None else None
        )
        if broker is not None:
            env = {**(env or {}), **broker.environment()}
        with self._span("open") as span:
            span.limits(planner.policy.limits)
            try:
                self._warm: Warm | None = Warm.start(
                    planner, "session", preload=preload, lifetime=lifetime, env=env,
                    tools=broker.guest.fileno() if broker is not None else None, inside=inside,
                )  # fmt: skip
            except BaseException as exc:
                if broker is not None:
                    broker.close()
                if isinstance(exc, StartFailed):
                    raise SessionError(f"the session could not start: {exc}", exc.result) from None
                raise
        if broker is not None:
            broker.guest.close()  # the interpreter's now
            broker.start()

    @property
    def alive(self) -> bool:
        return self._warm is not None

    def run(
        self,
        code: str,
        *,
        timeout: float | None = None,
        files: Mapping[str, bytes | str] | None = None,
    ) -> Result:
        """Run `code` in the session. Its Result is that of the call: status, output, times.
        `files` are written into /workspace first, replacing files of the same name.
        Raises `SessionError` when the session is gone (closed, or killed by this call)."""
        return self._traced(code, timeout, files, None)

    def _traced(
        self,
        code: str,
        timeout: float | None,
        files: Mapping[str, bytes | str] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Result:
        with self._span("run") as span:
            result = self._run(code, timeout, files, loop)
            span.result(result)
            return result

    def _run(
        self,
        code: str,
        timeout: float | None,
        files: Mapping[str, bytes | str] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Result:
        if not isinstance(code, str):
            raise PolicyError("code", "expected Python source as a str")
        payload = marshal.dumps({"code": code, "files": check_files(files or {})})
        limit = self.timeout if timeout is None else timeout
        if not limit > 0:
            raise PolicyError("timeout", "a call's timeout must be positive")
        with self._lock:
            warm = self._warm
            if warm is None:
                raise SessionError(self._ended or "the session is closed")
            cpu = self.planner.policy.limits.cpu_time
            out, err = (Sink(self.planner.policy.limits.output) for _ in range(2))
            if self._broker is not None:
                self._broker.begin(loop)
            try:
                outcome = warm.request(
                    {"op": "call", "timeout": limit, "cpu": cpu},
                    payload,
                    timeout=limit,
                    grace=self.grace,
                    cpu_time=cpu,
                    out=out,
                    err=err,
                )
            except BaseException as exc:
                # Interrupted here (a KeyboardInterrupt, say), the call may still be running,
                # and its answer would be taken for the next call's: end the session instead.
                self._end(warm, f"a call was interrupted in the caller ({type(exc).__name__})")
                raise
            calls, warnings = self._broker.end() if self._broker is not None else ((), ())
            if outcome.done is None:
                result = self._lost(warm, outcome, out, err)._replace(tool_calls=calls)
                raise SessionError(result.error or "the session ended", result)
            result = _call_result(outcome, out, err, warm.warnings + warnings)
            return result._replace(tool_calls=calls)

    def read_file(self, path: str) -> bytes:
        """The content of a regular file of the session: `path` is relative to /workspace, or
        absolute inside /workspace or /tmp. A link is never followed (nor one on the way);
        at most the policy's `limits.collect_size` bytes. Raises `PolicyError` for a bad path
        or a file that cannot be read, `SessionError` when the session is gone."""
        full = check_inside(path)
        name = full.lstrip("/")
        cap = self.planner.policy.limits.collect_size
        got = Collected(cap + len(name.encode(errors="surrogateescape")))
        self._file_call({"op": "read", "path": full, "cap": cap}, b"", path, got.message)
        return got.files().get(name, b"")

    def write_file(self, path: str, data: bytes | str) -> None:
        """Write `data` (str: as UTF-8) to `path` (as `read_file` takes it), making the
        directories on the way and replacing the file if there is one; at most the policy's
        `limits.file_size` bytes. A link is never followed: one in the way is an error."""
        full = check_inside(path)
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise PolicyError("data", f"expected bytes or str, not {type(data).__name__}")
        most = self.planner.policy.limits.file_size
        if len(data) > most:
            raise PolicyError("data", f"{len(data)} bytes: over limits.file_size ({most})")
        self._file_call({"op": "write", "path": full}, bytes(data), path)

    def list_files(self, path: str = ".") -> list[str]:
        """The names in a directory of the session (as `read_file` takes it), sorted; a
        directory's name ends with "/". A link is listed, never followed."""
        full = check_inside(path)
        names: list[str] = []
        cap = self.planner.policy.limits.collect_size
        room = [cap]  # what comes from inside is bounded here too

        def take(message: dict[str, object]) -> None:
            listed = message.get("names")
            for name in listed if message.get("op") == "names" and isinstance(listed, list) else ():
                if isinstance(name, str) and _plain(name) and room[0] >= len(name):
                    room[0] -= len(name)
                    names.append(name)

        self._file_call({"op": "list", "path": full, "cap": cap}, b"", path, take)
        return names

    def _file_call(
        self,
        message: dict[str, object],
        payload: bytes,
        path: str,
        on_message: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        with self._span(str(message["op"]), path=path), self._lock:
            warm = self._warm
            if warm is None:
                raise SessionError(self._ended or "the session is closed")
            try:
                outcome = warm.request(
                    message,
                    payload,
                    timeout=self.timeout,
                    grace=self.grace,
                    cpu_time=None,
                    out=Sink(0),
                    err=Sink(0),
                    on_message=on_message,
                )
            except BaseException as exc:
                self._end(warm, f"a call was interrupted in the caller ({type(exc).__name__})")
                raise
            if outcome.done is None:
                result = self._lost(warm, outcome, Sink(0), Sink(0))
                raise SessionError(result.error or "the session ended", result)
        error = outcome.done.get("error")
        if error is not None:
            raise PolicyError("path", f"{path!r}: {str(error)[:200]}")

    async def arun(
        self,
        code: str,
        *,
        timeout: float | None = None,
        files: Mapping[str, bytes | str] | None = None,
    ) -> Result:
        """`run` for asyncio: the call happens in a worker thread, the loop stays free. Async
        host tools run on this loop."""
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._traced, code, timeout, files, loop)

    def close(self) -> None:
        """End the session (its sandbox, and everything in it) and wait until it has been
        cleaned up. A call in progress on another thread is killed. Idempotent."""
        self._closing = True
        warm = self._warm
        if warm is not None:
            warm.kill()
        with self._span("close"), self._lock:
            if self._warm is not None:
                self._warm.close()
                self._warm = None
                self._ended = "the session is closed"
            if self._broker is not None:
                self._broker.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _span(self, what: str, **attributes: str) -> AbstractContextManager[Span]:
        return self.tracing.span(
            f"stockade.session.{what}", **{"session.id": self.id}, **attributes
        )

    def _lost(self, warm: Warm, outcome: Outcome, out: Sink, err: Sink) -> Result:
        """The interpreter is gone during a call: end the session, say why."""
        death = warm.death()
        if outcome.hard_killed and outcome.cpu_exceeded:
            why = "the call used up its CPU time and did not stop at the interrupt"
        elif outcome.hard_killed:
            why = "the call did not stop at the interrupt at its deadline"
        elif outcome.oom_kills:
            why = "the interpreter was killed for memory (the session's limit)"
        elif self._closing:
            why = "the session was closed during the call"
        elif death.exit_code == IDLE_CPU_EXIT:
            why = "threads left running used up the CPU time between calls"
        else:
            why = f"the interpreter ended ({describe_end(death.exit_code, death.signal)})"
        self._end(warm, why)
        # Killed (by us, the kernel or a signal), or an exit of its own (os._exit in the call)
        killed = outcome.hard_killed or outcome.oom_kills > 0 or death.signal is not None
        return make_result(
            out,
            err,
            timed_out=outcome.hard_killed,
            oom_killed=outcome.oom_kills > 0,
            signal=(death.signal or _SIGKILL) if killed else None,
            exit_code=None if killed else death.exit_code,
            wall_time=outcome.wall,
            cpu_time=0.0,
            peak_memory=outcome.peak or 0,
            error=self._ended,
            warnings=warm.warnings,
        )

    def _end(self, warm: Warm, why: str) -> None:
        if self._broker is not None:
            self._broker.end()
        warm.close()
        self._warm = None
        self._ended = f"the session is gone: {why}; its state is lost"


def _plain(name: str) -> bool:
    # One directory entry's name, a directory's with "/" after it.
    bare = name.removesuffix("/")
    return bool(bare) and "/" not in bare and "\0" not in bare and bare not in (".", "..")


def _call_result(outcome: Outcome, out: Sink, err: Sink, warnings: tuple[str, ...]) -> Result:
    done = outcome.done or {}
    exit_code = done.get("exit")
    interrupted = bool(done.get("interrupted"))
    signum = None
    if not isinstance(exit_code, int) or isinstance(exit_code, bool):
        exit_code, signum = None, _SIGINT  # a KeyboardInterrupt ended the call
    return make_result(
        out,
        err,
        timed_out=interrupted or outcome.cpu_exceeded,
        oom_killed=outcome.oom_kills > 0,
        signal=signum,
        exit_code=exit_code,
        wall_time=interpreter.number(done, "wall"),
        cpu_time=interpreter.number(done, "cpu") if "cpu" in done else outcome.cpu or 0.0,
        peak_memory=outcome.peak or int(interpreter.number(done, "maxrss")),
        error=None,
        warnings=warnings,
    )

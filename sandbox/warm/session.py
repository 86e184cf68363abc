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
"""

from __future__ import annotations

import asyncio
import marshal
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from stockade.errors import PolicyError, SessionError
from stockade.result import Result, describe_end, make_result
from stockade.spawn.capture import Sink
from stockade.spawn.plan import check_files  # the same checks as any run
from stockade.warm import host as interpreter
from stockade.warm.host import Outcome, StartFailed, Warm

if TYPE_CHECKING:
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
    ) -> None:
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
        try:
            self._warm: Warm | None = Warm.start(
                planner, "session", preload=preload, lifetime=lifetime, env=env
            )
        except StartFailed as exc:
            raise SessionError(f"the session could not start: {exc}", exc.result) from None

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
            if outcome.done is None:
                result = self._lost(warm, outcome, out, err)
                raise SessionError(result.error or "the session ended", result)
            return _call_result(outcome, out, err, warm.warnings)

    async def arun(
        self,
        code: str,
        *,
        timeout: float | None = None,
        files: Mapping[str, bytes | str] | None = None,
    ) -> Result:
        """`run` for asyncio: the call happens in a worker thread, the loop stays free."""
        return await asyncio.to_thread(self.run, code, timeout=timeout, files=files)

    def close(self) -> None:
        """End the session (its sandbox, and everything in it) and wait until it has been
        cleaned up. A call in progress on another thread is killed. Idempotent."""
        self._closing = True
        warm = self._warm
        if warm is not None:
            warm.kill()
        with self._lock:
            if self._warm is not None:
                self._warm.close()
                self._warm = None
                self._ended = "the session is closed"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        warm.close()
        self._warm = None
        self._ended = f"the session is gone: {why}; its state is lost"


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

"""Warm pools: `Sandbox(policy, pool=N)` keeps N sandboxes whose Python is already running.

Each pooled sandbox is an ordinary sandbox run (the whole security contract applies, as for
any run) whose workload is a zygote (`zygote.py`): a started interpreter, with the preloaded
modules imported, that forks a fresh child per snippet. The child applies the run's limits,
reads its code, files and environment, and runs in a clean /workspace; afterwards the zygote
kills every process of the run, wipes /workspace, /tmp and /dev/shm and removes SysV IPC
objects before it takes the next one. So runs on one sandbox follow each other from the same
clean state, and runs at the same time are in different sandboxes (namespaces, cgroups), so
they cannot see each other at all.

What serial runs on one pooled sandbox still share, unlike fresh sandboxes: the namespaces'
counters (the pid counter, loopback TCP TIME_WAIT entries) and the interpreter's start-up
state (the hash seed, `sys.flags`). A run that cooperates can signal a later one through those,
as through timing; nothing a run wrote, imported, set or left running reaches the next.
POSIX message queues are refused in pooled runs (mq_open fails with EPERM): they cannot be
listed from inside to be removed.

Threads: `run_code` may be called from any thread; each call takes one idle sandbox (waiting
for one when all are busy) and gives it back. A keeper thread starts sandboxes in the
background, replaces the ones that die or wear out, and ends them all at `close()`.
"""

from __future__ import annotations

import collections
import marshal
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from stockade.errors import PolicyError, SandboxError
from stockade.result import Result, describe_end, make_result
from stockade.spawn import running
from stockade.spawn.cancel import cancelled, tracked
from stockade.spawn.capture import Sink
from stockade.spawn.collect import ENDED_AT_A_LIMIT, Collected, plan_collect
from stockade.spawn.plan import check_files, with_program  # the same checks as any run
from stockade.spawn.supervisor import RunReport
from stockade.warm import host as interpreter
from stockade.warm.host import Outcome, StartFailed, Warm

if TYPE_CHECKING:
    from stockade.callbacks.broker import Broker
    from stockade.policy.model import Limits
    from stockade.spawn.plan import Planner


LIFETIME = 86_400.0  # the longest a pooled sandbox may live: the policy's largest timeout
MAX_AGE = 3_600.0  # seconds after which a pooled sandbox is replaced once it is idle
MAX_RUNS = 10_000  # runs after which a pooled sandbox is replaced
_READY = 10.0  # seconds a zygote may take to clean up after a run
_GRACE = 2.0  # seconds past a run's timeout before its whole sandbox is killed
_WAIT = 120.0  # seconds a run waits for a sandbox before it reports setup_failed
_FIRST_RETRY = 0.5  # seconds before starting again after a failed start; doubles up to 30


class Pool:
    """`size` warm sandboxes for `run_code(..., language="python")` under one policy."""

    def __init__(
        self,
        planner: Planner,
        size: int,
        *,
        preload: Sequence[str] = (),
        max_runs: int = MAX_RUNS,
        max_age: float = MAX_AGE,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1024:
            raise PolicyError("pool", f"expected 1 to 1024 sandboxes, got {size!r}")
        if planner.policy.network.allow:
            raise PolicyError(
                "pool",
                "not available with a network allowlist: its connection and byte budgets "
                "are per sandbox, so pooled runs would share them; use pool=0",
            )
        interpreter.check(planner, preload)
        planner.plan(["python3"], files={}, env={})  # a bad policy fails here, not in the thread
        self.planner, self.size, self.preload = planner, size, tuple(preload)
        self._environment = planner.environment({})  # what a run without `env` gets
        self.max_runs, self.max_age = max_runs, max_age
        lock = threading.Lock()
        self._freed = threading.Condition(lock)  # a sandbox (or an error) for a waiting run
        self._changed = threading.Condition(lock)  # work for the keeper
        self._idle: collections.deque[Warm] = collections.deque()
        self._all: set[Warm] = set()
        self._starting = 0
        self._retired: list[Warm] = []
        self._error: Result | None = None  # the last start failure, until a start succeeds
        self._retry_at, self._delay = 0.0, _FIRST_RETRY  # after failures, start less often
        self._closed = False
        self._owner = os.getpid()
        self._starters: list[threading.Thread] = []
        self._keeper = threading.Thread(target=self._keep, name="stockade-pool", daemon=True)
        self._keeper.start()

    # ------------------------------------------------------------------ runs

    def run_code(
        self,
        code: str,
        *,
        stdin: bytes | int | None = b"",
        files: Mapping[str, bytes | str] | None = None,
        env: Mapping[str, str] | None = None,
        collect: bool | Sequence[str] | None = None,
        limits: Limits | None = None,
        broker: Broker | None = None,
    ) -> Result:
        """Run Python source in a pooled sandbox: as `Sandbox.run_code` does, faster. `limits`
        (the policy's by default) gives the call's timeout, cpu_time and output. `broker`
        serves the run's host tools (callbacks/): its channel goes to the run's process."""
        limits = limits or self.planner.policy.limits
        checked = check_files(with_program(files, "main.py", code))
        pattern = plan_collect(collect)
        environment = self.planner.environment(env) if env else self._environment
        if broker is not None:  # the fd number is the child's to say
            environment = {**environment, **broker.environment(fd=None)}
        payload = marshal.dumps({"code": code, "files": checked, "env": environment})
        out, err = (Sink(limits.output) for _ in range(2))
        for _attempt in range(3):  # a sandbox that turns out dead before the run: take another
            warm = self._acquire()
            if isinstance(warm, Result):
                return warm
            healthy = False
            try:
                if cancelled():  # its arun_code gave up while it waited: run nothing
                    healthy = True
                    return _setup_failed("the run was cancelled before it started")
                if not warm.ready(_READY):
                    continue
                collected = Collected(self.planner.policy.limits.collect_size)
                with tracked(warm):  # a cancelled arun_code kills it; the pool replaces it
                    outcome = self._request(
                        warm, payload, stdin, out, err, pattern, collected, limits, broker
                    )
                healthy = outcome.done is not None
                result = self._result(warm, outcome, out, err, collected)
                return result if broker is None else broker.settle(result)
            finally:
                self._release(warm, healthy)
        return _setup_failed("no pooled sandbox could take the run (each died before it)")

    def _request(
        self,
        warm: Warm,
        payload: bytes,
        stdin: bytes | int | None,
        out: Sink,
        err: Sink,
        pattern: str | None,
        collected: Collected,
        limits: Limits,
        broker: Broker | None,
    ) -> Outcome:
        fds, made = [], []
        if isinstance(stdin, int) and not isinstance(stdin, bool):
            fds.append(stdin)  # handed over: the run reads it as its stdin
        elif stdin:
            made.append(interpreter.memfd(stdin))
        message = {
            "op": "run",
            "timeout": limits.timeout,
            "cpu": _ceil(limits.cpu_time),
            "stdin": bool(fds or made),
            "tools": broker is not None,
        }
        tools = [broker.guest.fileno()] if broker is not None else []  # last, after stdin
        if broker is not None and not broker.started:
            broker.start()  # no fork here: the zygote forks, inside
        try:
            return warm.request(
                message,
                payload,
                (fds or made) + tools,
                timeout=limits.timeout,
                grace=_GRACE,
                cpu_time=limits.cpu_time,
                out=out,
                err=err,
                start={"collect": pattern, "collect_size": collected.cap},
                on_message=collected.message,
            )
        finally:
            for fd in made:
                os.close(fd)

    def _result(
        self, warm: Warm, outcome: Outcome, out: Sink, err: Sink, collected: Collected
    ) -> Result:
        done, error = outcome.done, None
        if done is not None:
            exit_code, signum = interpreter.decode_status(done.get("status"))
            timed_out = bool(done.get("timed_out")) or outcome.cpu_exceeded
            wall = interpreter.number(done, "wall")
            cpu = interpreter.number(done, "cpu") if "cpu" in done else outcome.cpu or 0.0
            peak = outcome.peak or int(interpreter.number(done, "maxrss"))
        else:  # the zygote died during the run (a run may kill it: it shares its uid)
            death = warm.death()
            exit_code, signum = None, death.signal or _SIGKILL
            timed_out = outcome.hard_killed or outcome.cpu_exceeded
            wall, cpu, peak = outcome.wall, 0.0, outcome.peak or 0
            error = _death_text(death, self._closed)
        if timed_out or outcome.oom_kills > 0:
            collected.abandon(ENDED_AT_A_LIMIT)
        files = collected.files()  # before its warnings: it may leave out more
        return make_result(
            out,
            err,
            timed_out=timed_out,
            oom_killed=outcome.oom_kills > 0,
            signal=signum,
            exit_code=exit_code,
            wall_time=wall,
            cpu_time=cpu,
            peak_memory=peak,
            error=error,
            warnings=warm.warnings + collected.warnings(),
            files=files,
        )

    # ------------------------------------------------------------------ the sandboxes

    def _acquire(self) -> Warm | Result:
        deadline = time.monotonic() + _WAIT
        with self._freed:
            while True:
                if self._closed:
                    raise SandboxError("the pool is closed")
                if self._idle:
                    return self._idle.popleft()
                if self._error is not None and not self._starting and not self._all:
                    return self._error  # none alive, none coming: say why
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return _setup_failed(f"no pooled sandbox became free within {_WAIT:.0f} s")
                self._freed.wait(remaining)

    def _release(self, warm: Warm, healthy: bool) -> None:
        worn = warm.requests >= self.max_runs or time.monotonic() - warm.born >= self.max_age
        with self._freed:
            if healthy and not worn and not self._closed:
                self._idle.append(warm)  # the back: it cleans up while the others serve
                self._freed.notify()
            else:
                self._all.discard(warm)
                self._retired.append(warm)
                self._changed.notify()
                self._freed.notify_all()

    def _keep(self) -> None:
        """Start what is missing, close what was retired, until the pool is closed."""
        while True:
            with self._changed:
                while not self._closed and not self._retired and not self._missing():
                    wait = self._retry_at - time.monotonic()
                    self._changed.wait(wait if wait > 0 else None)
                if self._closed:
                    break
                retired, self._retired = self._retired, []
                missing = self._missing()
                self._starting += missing
            for warm in retired:
                warm.close()
            self._starters = [t for t in self._starters if t.is_alive()]
            for _ in range(missing):
                starter = threading.Thread(target=self._start_one, name="stockade-pool-start")
                self._starters.append(starter)
                starter.start()
        self._shutdown()

    def _missing(self) -> int:
        if time.monotonic() < self._retry_at:
            return 0
        return max(self.size - len(self._all) - self._starting, 0)

    def _start_one(self) -> None:
        try:
            warm: Warm | Result = Warm.start(
                self.planner, "pool", preload=self.preload, lifetime=LIFETIME
            )
        except StartFailed as exc:
            warm = exc.result
        except Exception as exc:  # reported to the runs that wait, retried later
            warm = _setup_failed(f"pool: {type(exc).__name__}: {exc}")
        with self._freed:
            self._starting -= 1
            if isinstance(warm, Result):
                self._error = warm
                self._retry_at = time.monotonic() + self._delay
                self._delay = min(self._delay * 2, 30.0)
            elif self._closed:
                self._retired.append(warm)
            else:
                self._error, self._delay = None, _FIRST_RETRY
                self._all.add(warm)
                self._idle.append(warm)
            self._freed.notify_all()
            self._changed.notify()

    # ------------------------------------------------------------------ the end

    def here(self) -> bool:
        """False in a forked copy of the caller: the sandboxes, and the thread that keeps
        them, are the parent's, neither to use nor to end."""
        return self._owner == os.getpid()

    def close(self) -> None:
        """End every pooled sandbox and wait until each has cleaned up. Runs in progress end
        (killed, with an error saying so). Idempotent."""
        if not self.here():
            return
        with self._freed:
            self._closed = True
            doomed = set(self._all)
            self._freed.notify_all()
            self._changed.notify_all()
        for warm in doomed:
            warm.kill()
        if self._keeper is not threading.current_thread():
            self._keeper.join()

    def _shutdown(self) -> None:
        for starter in list(self._starters):
            starter.join()
        with self._freed:
            while self._all - set(self._idle):  # runs in progress give theirs back
                self._freed.wait(1.0)
            doomed = list(self._all) + self._retired
            self._all.clear()
            self._idle.clear()
            self._retired = []
        for warm in doomed:
            warm.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SIGKILL = 9


def _ceil(seconds: float | None) -> int | None:
    return None if seconds is None else -int(-seconds // 1)


def _death_text(death: RunReport, closed: bool) -> str:
    if closed:
        return "the pool was closed during the run"
    how = describe_end(death.exit_code, death.signal)
    return (
        f"the pooled interpreter ended during the run ({how}): a run shares its uid and may "
        "kill it; the pool replaced it"
    )


def _setup_failed(text: str) -> Result:
    empty = Sink(0)
    return running.report_result(RunReport(setup_error=text), empty, empty)

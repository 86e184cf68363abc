"""`Sandbox`, the facade: run / run_code / arun / start / session / workspace. Planning is
`spawn.plan`'s, running `spawn`'s, warm interpreters `warm`'s."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from stockade.errors import PolicyError
from stockade.result import Result
from stockade.spawn import running
from stockade.spawn import server as forkserver
from stockade.spawn.cancel import caller_loop, cancellable, tracked
from stockade.spawn.capture import Sink
from stockade.spawn.plan import LANGUAGES, Planner, RunPlan, check_stdin, with_program
from stockade.telemetry import Span, Tracing

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator
    from pathlib import Path

    from stockade.batch.engine import Item
    from stockade.batch.jobs import JobResult
    from stockade.callbacks.broker import Broker
    from stockade.callbacks.tools import Tools
    from stockade.policy.model import Policy
    from stockade.spawn.prepared import Standby
    from stockade.warm.pool import Pool
    from stockade.warm.session import Session
    from stockade.workspace.workspace import Workspace

Stdin = bytes | int | None
Duration = float | str | None
Size = int | str | None
# A call's own limits, by the names `Policy.override` takes: the argument a PolicyError names.
_FIELDS = {"limits.timeout": "timeout", "limits.cpu_time": "cpu_time", "limits.memory": "memory",
           "limits.pids": "pids", "limits.output": "output_limit"}  # fmt: skip


class Sandbox:
    """Runs programs under one policy. Cheap to create; safe to share between threads and
    asyncio tasks: each call is a run of its own, and the object holds no per-run state."""

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        *,
        pool: int = 0,
        preload: Sequence[str] = (),
        prefork: bool = True,
        tracer_provider: object | None = None,
    ) -> None:
        """`pool=N` keeps N warm sandboxes for `run_code(..., "python")` (see pool.py), with
        the modules of the policy's `process.preload` and of `preload` already imported.
        `prefork` (on by default) sets up each next fresh sandbox of `run` ahead of its call,
        from the second run on (see prepared.py). `close()` ends what either keeps.
        `tracer_provider` (OpenTelemetry's) gives each run and session call a `stockade.*`
        span under the caller's current span (see telemetry.py)."""
        self.tracing = Tracing(tracer_provider)
        if policy is None or isinstance(policy, str | os.PathLike):
            from stockade.policy.model import (
                Policy,  # lazily: pydantic is heavy, and the CLI passes its own
            )

            policy = Policy.load(os.fspath(policy or "default"))
        elif isinstance(policy, Mapping):
            raise PolicyError("policy", "a dict is not a Policy: pass Policy.from_dict(data)")
        self.policy = policy
        self.planner = Planner(policy)
        self._standby: Standby | None = None
        if prefork:  # lazily, as the pool below: the command line never prepares a run
            import weakref

            from stockade.spawn.prepared import Standby

            self._standby = Standby()
            weakref.finalize(self, self._standby.close)
        self.pool: Pool | None = None
        if pool:
            from stockade.warm.pool import Pool

            self.pool = Pool(self.planner, pool, preload=(*policy.process.preload, *preload))

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: Stdin = b"",
        files: Mapping[str, bytes | str] | None = None,
        env: Mapping[str, str] | None = None,
        stdout_fd: int | None = None,
        stderr_fd: int | None = None,
        collect: bool | Sequence[str] | None = None,
        timeout: Duration = None,
        cpu_time: Duration = None,
        memory: Size = None,
        pids: int | None = None,
        output_limit: Size = None,
    ) -> Result:
        """Run `argv` in a fresh sandbox. `stdin` is bytes to feed, or an fd to hand over.
        `files` land in /workspace. `stdout_fd`/`stderr_fd` forward output live instead of
        keeping it (up to the output limit either way). `collect` (glob patterns, or True
        for all) brings the matching regular files of /workspace back in `Result.files`, up
        to the policy's `limits.collect_size`. `timeout`, `cpu_time`, `memory`, `pids` and
        `output_limit` are this call's limits instead of the policy's, in the policy's units
        and ranges."""
        with self.tracing.span("stockade.run") as span:
            check_stdin(stdin)
            planner = self._planner_for(timeout, cpu_time, memory, pids, output_limit)
            result = self._run(
                span, planner, argv, stdin, files, env, (stdout_fd, stderr_fd), collect
            )
            span.result(result)
            return result

    def _run(
        self,
        span: Span,
        planner: Planner,
        argv: Sequence[str],
        stdin: Stdin,
        files: Mapping[str, bytes | str] | None,
        env: Mapping[str, str] | None,
        forward: tuple[int | None, int | None],
        collect: bool | Sequence[str] | None,
        broker: Broker | None = None,
    ) -> Result:
        env = {**(env or {}), **(broker.environment() if broker else {})}
        plan = planner.plan(argv, files=files or {}, env=env, collect=collect)
        span.limits(planner.policy.limits)
        span.set(command=plan.argv[0])
        out, err = (Sink(planner.policy.limits.output, fd) for fd in forward)
        if self._standby is None:
            return _execute(plan, stdin, out, err, forkserver.launch, broker)
        result = _execute(plan, stdin, out, err, self._standby.launch, broker)
        if planner is self.planner and broker is None:  # the usual call: prepare the next
            self._standby.prepare(plan)
        return result

    def run_code(
        self,
        code: str,
        language: str = "python",
        *,
        stdin: Stdin = b"",
        files: Mapping[str, bytes | str] | None = None,
        env: Mapping[str, str] | None = None,
        collect: bool | Sequence[str] | None = None,
        timeout: Duration = None,
        cpu_time: Duration = None,
        memory: Size = None,
        pids: int | None = None,
        output_limit: Size = None,
        tools: Tools | None = None,
    ) -> Result:
        """Run source code: it is written to /workspace/main.py (or main.sh) and started.
        With a pool, Python runs in a warm pooled sandbox instead of a fresh one; a call
        with its own `memory` or `pids` runs fresh, since a pooled sandbox's cgroup is
        shared by its runs. `collect` and the limits are as `run` takes them.

        `tools` (Python only): host functions the code may call, each a plain function in
        its globals and in the module `stockade_tools` (see callbacks/); the calls are in
        `Result.tool_calls`."""
        if language not in LANGUAGES:
            raise PolicyError(
                "language", f"unknown language {language!r}; known: {', '.join(LANGUAGES)}"
            )
        check_stdin(stdin)
        pool = self.pool if memory is None and pids is None and language == "python" else None
        pooled = pool is not None and pool.here()
        broker = self._broker(tools, language)
        with self.tracing.span("stockade.run_code", language=language, pooled=pooled) as span:
            try:
                if broker is not None:
                    broker.begin(caller_loop())  # arun_code's: its async tools run there
                planner = self._planner_for(timeout, cpu_time, memory, pids, output_limit)
                if pool is not None and pooled:
                    span.limits(planner.policy.limits)
                    result = pool.run_code(
                        code, stdin=stdin, files=files, env=env, collect=collect,
                        limits=planner.policy.limits, broker=broker,
                    )  # fmt: skip
                else:
                    filename, argv = LANGUAGES[language]
                    if broker is not None:
                        argv = ("python3", "-c", tools_boot(), filename)
                    files = with_program(files, filename, code)
                    forward = (None, None)
                    result = self._run(span, planner, argv, stdin, files, env, forward, collect,
                                       broker)  # fmt: skip
            finally:
                if broker is not None:
                    broker.close()
            span.result(result)
            return result

    def _broker(self, tools: Tools | None, language: str) -> Broker | None:
        if tools is None:
            return None
        if language != "python":
            raise PolicyError("tools", f"host tools are for Python code, not {language!r}")
        from stockade.callbacks.broker import for_tools

        return for_tools(tools, self.policy.limits, self.tracing)

    async def arun(self, argv: Sequence[str], **options: object) -> Result:
        """`run` for asyncio: the run happens in a worker thread, the loop stays free.
        Cancelling the task kills the run."""
        return await cancellable(self.run, argv, **options)

    async def arun_code(self, code: str, language: str = "python", **options: object) -> Result:
        """`run_code` for asyncio, as `arun`. Async tools run on this event loop."""
        return await cancellable(self.run_code, code, language, **options)

    def map(
        self, jobs: Iterable[Item], *, concurrency: int | None = None, progress: bool = True
    ) -> Iterator[JobResult]:
        """Run many jobs, `concurrency` at a time (default: the machine's cores), and yield
        each `JobResult` (its id and Result) as it finishes. A job is a `Job`, a mapping of
        its fields, or a string of Python code (its index is its id); see docs/batch.md.
        Python code runs on the pool when there is one. A progress bar shows on a terminal
        (`progress=False`: never). Leaving the loop early kills the runs in progress."""
        from stockade.batch.engine import map_jobs

        return map_jobs(self, jobs, concurrency=concurrency, progress=progress)

    def amap(
        self, jobs: Iterable[Item], *, concurrency: int | None = None, progress: bool = True
    ) -> AsyncIterator[JobResult]:
        """`map` for asyncio: `async for done in box.amap(jobs): ...`."""
        from stockade.batch.engine import amap_jobs

        return amap_jobs(self, jobs, concurrency=concurrency, progress=progress)

    def start(
        self,
        argv: Sequence[str],
        *,
        stdin: int | None = None,
        files: Mapping[str, bytes | str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> running.Running:
        """Start `argv` in a fresh sandbox and return at once: a long-lived run whose raw
        pipes the caller holds (`Running.stdin` to write, `.stdout`/`.stderr` to read), with
        `wait()`, `kill()` and `close()`. It also ends when the caller dies."""
        check_stdin(stdin, data=False)
        plan = self.planner.plan(argv, files=files or {}, env=env or {})
        return running.start(plan, stdin, self.policy.limits.output)

    def session(
        self,
        language: str = "python",
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        preload: Sequence[str] = (),
        tools: Tools | None = None,
    ) -> Session:
        """A stateful interpreter in a sandbox of its own: `s.run(code)` keeps variables
        between calls (see session.py). `timeout` is each call's, the policy's by default.
        `tools`: host functions its code may call, as `run_code` takes them."""
        if language != "python":
            raise PolicyError("language", f"sessions run Python only, not {language!r}")
        from stockade.warm.session import Session

        modules = (*self.policy.process.preload, *preload)
        return Session(
            self.planner, timeout=timeout, env=env, preload=modules, tracing=self.tracing,
            tools=tools,
        )  # fmt: skip

    def workspace(
        self,
        *,
        idle: float | None = None,
        lifetime: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Workspace:
        """One sandbox that lives across many commands, file operations and sessions, until
        `close()`, `idle` seconds with nothing running, or its `lifetime` (the policy's
        `limits.workspace_idle` and `limits.workspace_lifetime` by default); see
        workspace.py. `env` is added to every command's environment."""
        from stockade.workspace.workspace import Workspace

        return Workspace(self.planner, idle=idle, lifetime=lifetime, env=env, tracing=self.tracing)

    def close(self) -> None:
        """End the pool's sandboxes and the prepared run, if any. Idempotent."""
        if self.pool is not None:
            self.pool.close()
        if self._standby is not None:
            self._standby.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _planner_for(
        self,
        timeout: Duration,
        cpu_time: Duration,
        memory: Size,
        pids: int | None,
        output_limit: Size,
    ) -> Planner:
        """The planner of a call with its own limits (the policy's, validated by the policy's
        own rules), or the sandbox's when it has none."""
        given = {"timeout": timeout, "cpu_time": cpu_time, "memory": memory, "pids": pids}
        given = {k: v for k, v in {**given, "output_limit": output_limit}.items() if v is not None}
        if not given:
            return self.planner
        try:
            policy = self.policy.override(**given)
        except PolicyError as exc:
            raise PolicyError(_FIELDS.get(exc.field, exc.field), exc.reason) from None
        return self.planner.with_limits(policy)


def _execute(
    plan: RunPlan,
    stdin: Stdin,
    out: Sink,
    err: Sink,
    launch: running.Launch,
    broker: Broker | None = None,
) -> Result:
    # One path for every run: start it (running.py), then capture its output to the end.
    handed = stdin if isinstance(stdin, int) else None
    tools = broker.guest.fileno() if broker is not None else None
    run = running.start(plan, handed, out.limit, launch, tools)
    if broker is None:
        with tracked(run):
            return run.capture(b"" if handed is not None else stdin or b"", out, err)
    broker.guest.close()  # the run's now
    broker.start()
    with tracked(run):
        return broker.settle(run.capture(b"" if handed is not None else stdin or b"", out, err))


def tools_boot() -> str:
    """`python3 -c` of a fresh run with tools: the guest module, then the code's main.py."""
    from stockade.callbacks.broker import GUEST_SOURCE as source

    return (
        "import sys, types\n"
        "module = types.ModuleType('stockade_tools')\n"
        "sys.modules['stockade_tools'] = module\n"
        f"exec(compile({source!r}, '<stockade_tools>', 'exec'), module.__dict__)\n"
        "module._main()\n"
    )

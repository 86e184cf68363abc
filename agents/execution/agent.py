"""`CodeExecutionAgent`: runs the code it is sent in the sandbox and replies with the result.

It depends on one small seam, `Executor` (`run_code(code, language, files=...) -> Result`),
which `stockade.Sandbox` satisfies; `sandbox="built-in"` builds one from a policy, `"docker"`
uses a Docker engine if one answers, and any object with that method may be passed instead.
Every run is recorded in the trace as a `sandbox_run` event, and each call its code made to
the agent's `tools` (host callbacks, built-in sandbox only) as a `tool_call` event.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from stockade import Policy, PolicyError, SessionError, SetupError, UnsupportedError

from ..agent import ChatAgent
from ..errors import ConfigError, SandboxSetupError
from ..messages import Message
from ..runtime.context import Context
from ..tools import Tool, ToolFunction, as_tool
from ..trace.events import ToolCallEvent
from . import workspace
from .code_blocks import (
    LANGUAGES,
    CodeBlock,
    ExecutionResult,
    ExecutionStatus,
    extract_blocks,
)

if TYPE_CHECKING:
    from stockade import Result

SandboxKind = Literal["built-in", "docker"]
WORKSPACE_LIMIT = 4 << 20


class Executor(Protocol):
    """Runs one piece of code; `stockade.Sandbox` is one. `files` land in /workspace; an
    executor that takes `collect` (as `Sandbox.run_code` does) hands files back in
    `Result.files`. It is only passed when the agent's `collect` asks for files."""

    def run_code(
        self, code: str, language: str = "python", *, files: Mapping[str, bytes | str] | None = None
    ) -> Result: ...


@dataclass(frozen=True)
class BlockRun:
    """One block's run, as the trace records it (the output is the block's own)."""

    status: str
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    wall_time: float
    error: str | None
    files: dict[str, bytes] = field(default_factory=dict)  # the files the block made
    tool_calls: tuple[Any, ...] = ()  # the block's calls to host tools (stockade.ToolCall)


class CodeExecutionAgent(ChatAgent):
    """Runs the code blocks of each message it receives, one sandbox run per block, and
    replies with an `ExecutionResult`. Needs no model.

    `timeout` (seconds) bounds each block's wall-clock and CPU time; `max_output_size` is the
    most bytes kept of each of stdout and stderr; the other limits come from `policy` (a
    `stockade.Policy` or a built-in policy's name). With `persist_workspace=True` the blocks of
    one conversation (the messages that descend from one outside message) share /workspace.
    With `stateful=True` the Python blocks of one conversation run in one sandboxed
    interpreter (a `stockade` session), so variables and imports carry over; the
    `max_sessions` most recently used are kept. `close()` ends the sessions and the
    sandbox's prepared run.

    `collect` picks the files a block's run hands back as `ExecutionResult.artifacts`: glob
    patterns, or True for every file (the default with the built-in sandbox; off with
    another executor unless asked for), up to the policy's `limits.collect_size`. The
    block's own code and its input files come back only if the block changed them. Blocks
    that run with `persist_workspace` or `stateful` hand back none.

    `tracer_provider` (OpenTelemetry's) gives the built-in sandbox's runs and session calls
    their `stockade.*` spans, under the current span (the runtime's `invoke_agent`).

    `tools`: host functions the Python blocks may call (with the built-in sandbox): each is
    a plain function in the block's globals and in `stockade_tools`, runs here on the host
    with its arguments validated, and is traced as a `tool_call` event (see
    docs/workspaces.md, "Host callbacks"). Not with `persist_workspace`.
    """

    runs_code = True

    def __init__(
        self,
        name: str = "code_runner",
        language: str = "python",
        sandbox: SandboxKind | Executor = "built-in",
        timeout: float | None = 30,
        max_output_size: int = 10_000,
        policy: Policy | str | Path = "default",
        *,
        persist_workspace: bool = False,
        stateful: bool = False,
        max_sessions: int = 8,
        workspace_limit: int = WORKSPACE_LIMIT,
        collect: bool | Sequence[str] | None = None,
        tools: Sequence[Tool | ToolFunction] = (),
        role: str | None = None,
        description: str = "Runs code in the sandbox and reports the result.",
        tracer_provider: object | None = None,
    ) -> None:
        super().__init__(name, tools=tools, role=role, description=description)
        if tools and (sandbox != "built-in" or persist_workspace):
            raise ConfigError(
                "tools need the built-in sandbox, without persist_workspace",
                hint="host callbacks reach the Python process of a built-in run or session",
            )
        if bad := [t.name for t in map(as_tool, tools) if not t.name.isidentifier()]:
            raise ConfigError(
                f"tool {bad[0]!r}: code calls it by name, so it must be an identifier"
            )
        if language not in LANGUAGES:
            raise ConfigError(f"unknown language {language!r}", hint=f"one of {LANGUAGES}")
        if max_output_size < 0 or workspace_limit < 1 or max_sessions < 1:
            raise ConfigError("max_output_size, workspace_limit and max_sessions must be positive")
        self.language = language
        self.timeout = timeout
        self.max_output_size = max_output_size
        self.persist_workspace = persist_workspace
        self.workspace_limit = workspace_limit
        self.last_files: dict[str, str] = {}
        room = workspace.output_room(workspace_limit) if persist_workspace else 0
        try:
            self.executor = _executor(
                sandbox, policy, timeout, max_output_size + room, tracer_provider
            )
        except PolicyError as exc:  # timeout=0, an unknown policy name, ...
            raise ConfigError(f"the sandbox refused this agent's settings: {exc}") from exc
        # A sandbox made here is this agent's to close; an executor passed in is the caller's.
        made = isinstance(sandbox, str)
        self._close_executor = getattr(self.executor, "close", None) if made else None
        if stateful and not callable(getattr(self.executor, "session", None)):
            raise ConfigError("stateful=True needs the built-in sandbox (it keeps sessions)")
        self.stateful = stateful
        self.collect = (sandbox == "built-in") if collect is None else collect
        self.max_sessions = max_sessions
        self._sessions: dict[str, Any] = {}  # conversation -> sandbox session, by last use

    async def on_message(self, message: Message, ctx: Context) -> None:
        result = await self.execute(message, conversation=ctx.root.id)
        await ctx.answer(result)

    async def execute(self, message: Message | str, *, conversation: str = "") -> ExecutionResult:
        """Run the message's code blocks and return the result, without sending anything.
        `conversation` keys the persisted workspace."""
        if isinstance(message, str):
            message = CodeBlock(code=message, language=self.language)
        blocks = extract_blocks(message, self.language)
        problem = _refusal(blocks)
        if problem is not None:
            return ExecutionResult(status="error", blocks_total=len(blocks), error=problem)
        runs: list[BlockRun] = []
        for block in blocks:
            run = await self._run_block(block, conversation)
            runs.append(run)
            if run.status != "ok":
                break
        return self._summary(runs, blocks)

    def reset_workspace(self, conversation: str | None = None) -> None:
        """Forget one conversation's persisted workspace, or all of them."""
        spaces: dict[str, str] = self.state.setdefault("workspaces", {})
        if conversation is None:
            spaces.clear()
        else:
            spaces.pop(conversation, None)

    def as_tool(self, name: str = "run_code") -> Tool:
        """A tool another agent's model can call to run code here (in a fresh workspace that
        holds the files of this agent's last run, e.g. a solution and its tests)."""

        async def run_code(code: str, language: str = "python") -> str:
            """Run code in the sandbox and return its status and output.

            The workspace holds the files of the code runner's last run."""
            block = CodeBlock(code=code, language=language, files=dict(self.last_files))
            return (await self.execute(block)).describe()

        return Tool(run_code, name=name)

    async def _run_block(self, block: CodeBlock, conversation: str) -> BlockRun:
        self.last_files = dict(block.files)
        if block.filename:
            self.last_files[block.filename] = block.code
        start = time.monotonic()
        try:
            if self.stateful and block.language == "python":
                run = await self._run_in_session(block.code, conversation, self.last_files)
            elif self.persist_workspace:
                run = await self._run_persisted(block, conversation)
            else:
                files = self.last_files
                result = await self._run(block.code, block.language, files, self.collect)
                run = _with(_block_run(result), files=_made(result, block.code, files))
        except PolicyError as exc:  # the message asked for something a run cannot take
            run = BlockRun("error", None, None, "", "", False, False, 0.0, str(exc))
        except UnsupportedError as exc:
            raise SandboxSetupError(
                f"the sandbox cannot run here: {exc.missing}", exc.hint
            ) from exc
        except SetupError as exc:
            raise SandboxSetupError(f"the sandbox could not set up the run: {exc}") from exc
        self.host.record_sandbox_run(self.name, block.language, block.code, run)
        self._record_tool_calls(run)
        if run.status == "setup_failed":  # no code ran: its output would tell a model nothing
            raise SandboxSetupError(f"the sandbox could not set up the run: {run.error}")
        if run.wall_time == 0.0:
            run = _with(run, wall_time=time.monotonic() - start)
        return run

    def _record_tool_calls(self, run: BlockRun) -> None:
        """Each call the block's code made to a host tool, traced as the model's are."""
        host = self.host
        for number, call in enumerate(run.tool_calls, start=1):
            host.trace.record(
                ToolCallEvent(
                    agent=self.name,
                    tool=call.tool,
                    call_id=f"code-{number}",
                    arguments=call.arguments,
                    result=call.result if call.ok else f"Error: {call.error}",
                    ok=call.ok,
                    latency=call.duration,
                )
            )
            host.counters.tool_calls += 1
            host.counters.tool_errors += not call.ok

    def _host_tools(self) -> dict[str, ToolFunction]:
        return {tool.name: tool.function for tool in map(as_tool, self.tools)}

    async def _run(
        self,
        code: str,
        language: str,
        files: Mapping[str, bytes | str],
        collect: bool | Sequence[str] = False,
    ) -> Result:
        options: dict[str, Any] = {"files": files, **({"collect": collect} if collect else {})}
        if self.tools and language == "python":
            options["tools"] = self._host_tools()
        arun_code = getattr(self.executor, "arun_code", None)
        if arun_code is not None:  # stockade.Sandbox's: a cancelled chat kills the run
            return await arun_code(code, language, **options)  # type: ignore[no-any-return]
        return await asyncio.to_thread(self.executor.run_code, code, language, **options)

    async def _run_in_session(
        self, code: str, conversation: str, files: Mapping[str, str]
    ) -> BlockRun:
        session = self._sessions.pop(conversation, None)
        if session is None:
            options = {"tools": self._host_tools()} if self.tools else {}
            session = await asyncio.to_thread(self.executor.session, **options)  # type: ignore[attr-defined]
        self._sessions[conversation] = session  # the most recently used last
        while len(self._sessions) > self.max_sessions:  # the least recently used goes
            oldest = next(iter(self._sessions))
            await asyncio.to_thread(self._sessions.pop(oldest).close)
        try:
            return _block_run(await session.arun(code, timeout=self.timeout, files=files))
        except SessionError as exc:  # the call could not be stopped: its state is gone
            self._sessions.pop(conversation, None)  # unless a newer conversation evicted it
            await asyncio.to_thread(session.close)
            return (
                _with(_block_run(exc.result), error=str(exc))
                if exc.result
                else BlockRun("error", None, None, "", "", False, False, 0.0, str(exc))
            )

    def close(self) -> None:
        """End every session this agent keeps (stateful=True), and the run the built-in
        sandbox keeps prepared. The agent can still run code afterwards, in fresh sandboxes."""
        while self._sessions:
            self._sessions.popitem()[1].close()
        if self._close_executor is not None:
            self._close_executor()

    async def _run_persisted(self, block: CodeBlock, conversation: str) -> BlockRun:
        spaces: dict[str, str] = self.state.setdefault("workspaces", {})
        previous = spaces.get(conversation)
        archive = workspace.decode(previous) if previous is not None else None
        plan = workspace.prepare(
            block.code, block.language, self.last_files, archive, self.workspace_limit
        )
        result = await self._run(plan.code, "python", plan.files)
        raw = getattr(result, "stdout_bytes", None)
        parts = workspace.split(
            raw if raw is not None else result.stdout.encode(),
            plan.marker,
            self.workspace_limit,
            truncated=result.stdout_truncated,
        )
        if parts.archive is not None:
            spaces[conversation] = workspace.encode(parts.archive)
        run = _block_run(result)
        own = parts.stdout[: self.max_output_size]
        cut = len(parts.stdout) > self.max_output_size
        note = " ".join(n for n in (run.error, parts.problem) if n) or None
        return _with(run, stdout=own.decode(errors="replace"), stdout_truncated=cut, error=note)

    def _summary(self, runs: list[BlockRun], blocks: Sequence[CodeBlock]) -> ExecutionResult:
        last = runs[-1]
        out, out_cut = _join([r.stdout for r in runs], self.max_output_size)
        err, err_cut = _join([r.stderr for r in runs], self.max_output_size)
        return ExecutionResult(
            status=_status(last.status),
            exit_code=last.exit_code,
            signal=last.signal,
            stdout=out,
            stderr=err,
            stdout_truncated=out_cut or any(r.stdout_truncated for r in runs),
            stderr_truncated=err_cut or any(r.stderr_truncated for r in runs),
            duration=sum(r.wall_time for r in runs),
            language=blocks[len(runs) - 1].language,
            blocks_run=len(runs),
            blocks_total=len(blocks),
            error=last.error,
            artifacts={name: data for r in runs for name, data in r.files.items()},
        )


def _executor(
    kind: SandboxKind | Executor,
    policy: Policy | str | Path,
    timeout: float | None,
    output: int,
    tracer_provider: object | None,
) -> Executor:
    if not isinstance(kind, str):
        if not callable(getattr(kind, "run_code", None)):
            raise ConfigError("sandbox must be 'built-in', 'docker' or an object with run_code()")
        return kind
    base = policy if isinstance(policy, Policy) else Policy.load(policy)
    limits: dict[str, Any] = {"output_limit": output}
    if timeout is not None:
        limits |= {"timeout": timeout, "cpu_time": timeout}
    if kind == "built-in":
        from stockade import Sandbox  # imported on first use: `import stockade.agents` stays light

        return Sandbox(base.override(**limits), tracer_provider=tracer_provider)
    if kind == "docker":
        from .docker import DockerExecutor

        return DockerExecutor.connect(base.override(**limits))
    raise ConfigError(f"unknown sandbox {kind!r}", hint="'built-in' (the default) or 'docker'")


def _refusal(blocks: Sequence[CodeBlock]) -> str | None:
    """Why these blocks cannot run at all, or None."""
    if not blocks:
        return "no code found: send a CodeBlock, or text with a fenced ```python block"
    for number, block in enumerate(blocks, start=1):
        if block.language not in LANGUAGES:
            known = ", ".join(LANGUAGES)
            return f"block {number}: unknown language {block.language!r}; this agent runs {known}"
        for name in [*block.files, *([block.filename] if block.filename else [])]:
            normal = posixpath.normpath(name)
            if name.startswith("/") or normal in (".", "..") or normal.startswith("../"):
                return f"block {number}: file {name!r} must be a relative path inside /workspace"
    return None


def _block_run(result: Result) -> BlockRun:
    status = getattr(result.status, "value", result.status)
    return BlockRun(
        status=str(status),
        exit_code=result.exit_code,
        signal=result.signal,
        stdout=result.stdout,
        stderr=result.stderr,
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        wall_time=result.wall_time,
        error=result.error,
        tool_calls=tuple(getattr(result, "tool_calls", ())),
    )


def _made(result: Result, code: str, inputs: Mapping[str, str]) -> dict[str, bytes]:
    """The files a run handed back, but for its code and inputs as they went in."""
    given = {name: content.encode() for name, content in inputs.items()}
    return {
        name: data
        for name, data in getattr(result, "files", {}).items()
        if data != given.get(name) and data != code.encode()
    }


def _status(value: str) -> ExecutionStatus:
    known: tuple[ExecutionStatus, ...] = get_args(ExecutionStatus)
    return next((s for s in known if s == value), "error")


def _with(run: BlockRun, **changes: Any) -> BlockRun:
    return BlockRun(**{**run.__dict__, **changes})


def _join(texts: list[str], limit: int) -> tuple[str, bool]:
    text = "".join(texts)
    data = text.encode()
    if len(data) <= limit:
        return text, False
    return data[:limit].decode(errors="ignore"), True

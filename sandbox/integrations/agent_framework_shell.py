"""Microsoft Agent Framework: a `ShellExecutor` over a Stockade workspace, for the harness's
`create_harness_agent(client, shell_executor=...)` and as a `run_shell` tool, in the shape of
the framework's `LocalShellTool` and `DockerShellTool`. Unlike the local one it confines the
commands (its own namespaces, an unprivileged uid, no network, the policy's limits), and
unlike Docker's it needs no engine or image.

    from stockade.integrations.agent_framework_shell import StockadeShellExecutor
    async with StockadeShellExecutor(Sandbox()) as shell:
        agent = Agent(client=client, tools=[shell.as_function()])

One workspace per executor (the framework's single-session ownership): its files persist
between commands, each command starts in /workspace with the policy's environment, and
commands may run at once. A command's outcome is its `ShellResult` (`timed_out` at the
timeout), never an exception; a workspace that is gone raises `ShellExecutionError`.
"""

from __future__ import annotations

from typing import Any

from stockade import Result, Sandbox, Workspace, WorkspaceError

from . import missing
from .report import exit_code, sandbox_note

try:
    from agent_framework import FunctionTool, tool
    from agent_framework_tools.shell import ShellExecutionError, ShellResult
except ImportError as error:
    raise missing(__name__, "agent-framework", error) from error

DESCRIPTION = (
    "Run a shell command (/bin/sh) in a sandboxed Linux workspace: no network, files kept"
    " between commands under /workspace, each command starting there. Returns its stdout,"
    " stderr and exit code."
)


class StockadeShellExecutor:
    """The framework's `ShellExecutor` protocol over one workspace of `sandbox` (made on the
    default policy when none is given; borrowed otherwise). `timeout` is a command's default,
    in seconds (the policy's when None). `approval_mode` is the `run_shell` tool's:
    "never_require" by default, the sandbox being the safeguard."""

    def __init__(
        self,
        sandbox: Sandbox | None = None,
        *,
        timeout: float | None = None,
        approval_mode: Any = "never_require",
    ) -> None:
        self.sandbox = sandbox or Sandbox()
        self._own = sandbox is None
        self.timeout = timeout
        self.approval_mode = approval_mode
        self.workspace: Workspace | None = None

    async def start(self) -> None:
        if self.workspace is None:
            self.workspace = self.sandbox.workspace()

    async def close(self) -> None:
        if self.workspace is not None:
            self.workspace.close()
            self.workspace = None
        if self._own:
            self.sandbox.close()

    async def run(self, command: str, *, timeout: float | None = None) -> ShellResult:
        await self.start()
        assert self.workspace is not None
        try:
            result = await self.workspace.aexec(command, timeout=timeout or self.timeout)
        except WorkspaceError as exc:
            raise ShellExecutionError(f"the Stockade workspace is gone: {exc.reason}") from exc
        return shell_result(result)

    def as_function(
        self, *, name: str = "run_shell", description: str | None = None
    ) -> FunctionTool:
        """A `run_shell(command)` tool (kind "shell", as the framework's shell tools) over
        this executor."""

        async def run_shell(command: str) -> str:
            return (await self.run(command)).format_for_model()

        return tool(
            func=run_shell,
            name=name,
            description=description or DESCRIPTION,
            approval_mode=self.approval_mode,
            kind="shell",
        )

    async def __aenter__(self) -> StockadeShellExecutor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def shell_result(result: Result) -> ShellResult:
    note = sandbox_note(result, said=("ok", "nonzero_exit", "timeout"))  # see `timed_out`
    stderr = result.stderr + (f"\n{note}" if note else "")
    return ShellResult(
        stdout=result.stdout,
        stderr=stderr,
        exit_code=exit_code(result),
        duration_ms=round(result.wall_time * 1000),
        truncated=result.stdout_truncated or result.stderr_truncated,
        timed_out=result.status == "timeout",
    )

"""A LangChain Deep Agents sandbox backend over a Stockade workspace: `create_deep_agent(model,
backend=StockadeBackend())` gets its `execute`, `ls`, `read`, `write`, `edit`, `grep` and
`glob` tools confined on Linux, with no daemon, image or cloud account.

    from stockade.integrations.deepagents import StockadeBackend
    with StockadeBackend(Sandbox()) as backend:
        agent = create_deep_agent(model=model, backend=backend)

One workspace is the agent's filesystem for the backend's life: commands run in it at once
(each its own process tree), and files persist between them. `execute` answers the command's
stdout and stderr together and its exit code (124 for a timeout, 137 out of memory, as a shell
says), with a bracketed note when the sandbox, not the command, ended it. `upload_files` and
`download_files` are the workspace's file calls; everything else is `BaseSandbox`'s, built on
`execute` with the sandbox's own `python3`. Paths are absolute, inside `/workspace` or `/tmp`.
"""

from __future__ import annotations

import errno
import uuid

from stockade import PolicyError, Result, Sandbox, WorkspaceFileError

from . import missing
from .report import exit_code, sandbox_note

try:
    from deepagents.backends.protocol import (
        ExecuteResponse,
        FileDownloadResponse,
        FileOperationError,
        FileUploadResponse,
    )
    from deepagents.backends.sandbox import BaseSandbox
except ImportError as error:
    raise missing(__name__, "deepagents", error) from error

_ERRORS: dict[int, FileOperationError] = {
    errno.ENOENT: "file_not_found",
    errno.EISDIR: "is_directory",
    errno.EACCES: "permission_denied",
    errno.EPERM: "permission_denied",
    errno.ELOOP: "permission_denied",  # a link: never followed
}


class StockadeBackend(BaseSandbox):
    """Deep Agents' `BaseSandbox` over one workspace of `sandbox` (made on the default policy
    when none is given; borrowed otherwise). `timeout` is a command's default, in seconds
    (the policy's when None). `close()` (or `delete()`, or leaving a `with`) ends the
    workspace and everything in it."""

    def __init__(self, sandbox: Sandbox | None = None, *, timeout: float | None = None) -> None:
        self.sandbox = sandbox or Sandbox()
        self._own = sandbox is None
        self.timeout = timeout
        self.workspace = self.sandbox.workspace()
        self._id = f"stockade-{uuid.uuid4().hex[:12]}"

    @property
    def id(self) -> str:
        return self._id

    def execute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        return _response(self.workspace.exec(command, timeout=timeout or self.timeout))

    async def aexecute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        """As `execute`; cancelling the task kills the command."""
        return _response(await self.workspace.aexec(command, timeout=timeout or self.timeout))

    def upload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        """Each file written whole (replacing one there, making its directories), in order;
        a failure is that file's error, and the others go on."""
        return [FileUploadResponse(path=p, error=self._upload(p, data)) for p, data in files]

    def download_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        return [self._download(path) for path in paths]

    def _upload(self, path: str, content: bytes) -> FileOperationError | None:
        if not path.startswith("/"):
            return "invalid_path"
        try:
            self.workspace.write_file(path, content)
        except (WorkspaceFileError, PolicyError) as exc:
            return _error(exc)
        return None

    def _download(self, path: str) -> FileDownloadResponse:
        if not path.startswith("/"):
            return FileDownloadResponse(path=path, content=None, error="invalid_path")
        try:
            content = self.workspace.read_file(path)
        except (WorkspaceFileError, PolicyError) as exc:
            return FileDownloadResponse(path=path, content=None, error=_error(exc))
        return FileDownloadResponse(path=path, content=content, error=None)

    def close(self) -> None:
        self.workspace.close()
        if self._own:
            self.sandbox.close()

    delete = close

    def __enter__(self) -> StockadeBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _response(result: Result) -> ExecuteResponse:
    note = sandbox_note(result)  # the sandbox ended it: say so
    output = result.stdout + result.stderr + (f"\n{note}" if note else "")
    truncated = result.stdout_truncated or result.stderr_truncated
    return ExecuteResponse(output=output, exit_code=exit_code(result), truncated=truncated)


def _error(exc: WorkspaceFileError | PolicyError) -> FileOperationError:
    if isinstance(exc, PolicyError):  # outside /workspace and /tmp, or `..`
        return "permission_denied"
    return _ERRORS.get(exc.errno or 0, "invalid_path")

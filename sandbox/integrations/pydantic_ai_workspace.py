"""A Pydantic AI workspace backend over a Stockade workspace (`WorkspaceBackend`,
`SupportsCommands`, `SupportsFilesystem`, `SupportsRealpath`), so `agent.run(...,
workspace=StockadeWorkspace(box))` and the harness's shell and file capabilities work in one
confined Linux sandbox, with no daemon or image.

    from stockade.integrations.pydantic_ai_workspace import StockadeWorkspace
    result = await agent.run("...", workspace=StockadeWorkspace(Sandbox()))

As the protocol asks: nothing happens when it is built; its first operation starts the
workspace (one, however many operations race to be first) and records its ref; a ref names a
live workspace of this process to attach to, and one that is gone is
`WorkspaceUnavailableError`, never replaced. Commands start in /workspace with stdin at EOF and
may run at once; a non-zero exit is a result; a timeout is `WorkspaceTimeoutError` and
cancelling the task kills the command's tree; output past the policy's limit is
`WorkspaceOutputLimitError`. The backend never ends the workspace when a run ends: `close()`
does. Files (`SupportsFilesystem`): contents go through the workspace's file calls (opened
inside, one name at a time; a write through a symbolic link writes its target, which must be
in /workspace or /tmp too), metadata through a small script run in the sandbox's Python.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
import uuid
import weakref
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

from stockade import PolicyError, Result, Sandbox, Workspace, WorkspaceError, WorkspaceFileError

from . import missing
from .report import exit_code

try:
    from pydantic_ai.messages import WorkspaceRef
    from pydantic_ai.workspaces import (
        CommandResult,
        FileEntry,
        WorkspaceOutputLimitError,
        WorkspaceTimeoutError,
        WorkspaceUnavailableError,
    )
    from pydantic_ai.workspaces.protocol import validate_timeout
except ImportError as error:
    raise missing(__name__, "pydantic-ai", error) from error

PROVIDER = "stockade"
# Metadata, answered inside as JSON: OP PATH, for the ops below; an OSError is {"errno": N}.
# Paths come as arguments, never as code.
_META = """
import json, os, sys
def entry(path):
    size = os.stat(path).st_size if os.path.isfile(path) else None
    name = os.path.basename(path.rstrip("/")) or "/"
    return {"name": name, "path": path, "is_dir": os.path.isdir(path), "size": size}
ops = {
    "exists": os.path.lexists,
    "stat": lambda path: os.stat(path) and entry(path),
    "list": lambda path: [entry(os.path.join(path, name)) for name in sorted(os.listdir(path))],
    "mkdir": lambda path: os.makedirs(path, exist_ok=True),
    "realpath": os.path.realpath,
}
try:
    answer = ops[sys.argv[1]](sys.argv[2])
except OSError as exc:
    answer = {"errno": exc.errno}
print(json.dumps(answer))
"""
T = TypeVar("T")
# The workspaces this process started, by ref id: what a ref can attach to.
_LIVE: weakref.WeakValueDictionary[str, Workspace] = weakref.WeakValueDictionary()


class StockadeWorkspace:
    """A workspace of `sandbox` (the default policy's when None), started on first use, or
    the live one `ref` names."""

    def __init__(self, sandbox: Sandbox | None = None, *, ref: WorkspaceRef | None = None) -> None:
        if ref is not None and ref.provider != PROVIDER:
            raise ValueError(f"a {ref.provider!r} workspace ref, not a {PROVIDER!r} one")
        self.sandbox = sandbox or Sandbox()
        self._ref = ref
        self._workspace: Workspace | None = None
        self._lock = threading.Lock()

    @property
    def ref(self) -> WorkspaceRef | None:
        return self._ref

    async def working_dir(self) -> str:
        await self._ready()
        return "/workspace"

    async def run(
        self,
        command: str | Sequence[str],
        *,
        shell: bool = False,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        if shell != isinstance(command, str):
            raise TypeError(
                "a shell command is a str (shell=True), an argv a sequence (shell=False)"
            )
        validate_timeout(timeout)
        workspace = await self._ready()
        argv = command if isinstance(command, str) else list(command)
        try:
            result = await workspace.aexec(argv, env=dict(env or {}), timeout=timeout)
        except WorkspaceError as exc:
            raise WorkspaceUnavailableError(
                f"the Stockade workspace is gone: {exc.reason}"
            ) from exc
        return self._answer(result)

    async def read_bytes(self, path: str) -> bytes:
        workspace = await self._ready()
        return await self._file(asyncio.to_thread(workspace.read_file, path), path)

    async def write_bytes(self, path: str, data: bytes) -> None:
        workspace = await self._ready()
        try:
            await self._file(asyncio.to_thread(workspace.write_file, path, data), path)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            target = await self._meta("realpath", path)  # through the link, as the protocol asks
            await self._file(asyncio.to_thread(workspace.write_file, target, data), target)

    async def stat(self, path: str) -> FileEntry:
        return FileEntry(**await self._meta("stat", path))

    async def list_dir(self, path: str) -> list[FileEntry]:
        return [FileEntry(**entry) for entry in await self._meta("list", path)]

    async def make_dir(self, path: str) -> None:
        await self._meta("mkdir", path)

    async def remove(self, path: str) -> None:
        if "/workspace".startswith(path.rstrip("/") or "/"):
            raise ValueError(f"{path!r} is the working directory or above it")
        workspace = await self._ready()
        await self._file(asyncio.to_thread(workspace.remove, path, recursive=True), path)

    async def realpath(self, path: str) -> str:
        return str(await self._meta("realpath", path))

    async def exists(self, path: str) -> bool:
        return bool(await self._meta("exists", path))

    async def close(self) -> None:
        """End the workspace and everything in it (its ref then names nothing)."""
        if self._workspace is not None:
            self._workspace.close()

    def _answer(self, result: Result) -> CommandResult:
        if result.status == "timeout":
            raise WorkspaceTimeoutError(
                "the command timed out", stdout=result.stdout, stderr=result.stderr
            )
        if result.stdout_truncated or result.stderr_truncated:
            limit = self.sandbox.policy.limits.output
            raise WorkspaceOutputLimitError(
                f"the command's output passed {limit} bytes",
                limit=limit,
                stdout=result.stdout,
                stderr=result.stderr,
            )
        return CommandResult(
            exit_code=exit_code(result), stdout=result.stdout, stderr=result.stderr
        )

    async def _file(self, call: Awaitable[T], path: str) -> T:
        """A file call, its failure as the builtin error (FileNotFoundError...)."""
        try:
            return await call
        except WorkspaceFileError as exc:
            raise OSError(exc.errno, exc.strerror, path) from None
        except PolicyError as exc:  # outside /workspace and /tmp, or `..`
            raise PermissionError(errno.EACCES, str(exc), path) from None
        except WorkspaceError as exc:
            raise WorkspaceUnavailableError(
                f"the Stockade workspace is gone: {exc.reason}"
            ) from exc

    async def _meta(self, op: str, path: str) -> Any:
        result = await self.run(["python3", "-c", _META, op, path])
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            raise OSError(errno.EIO, result.stderr.strip() or f"{op} failed", path) from None
        if isinstance(answer, dict) and "errno" in answer:
            raise OSError(answer["errno"], os.strerror(answer["errno"]), path)
        return answer

    async def _ready(self) -> Workspace:
        if self._workspace is None:
            await asyncio.to_thread(self._start)
        assert self._workspace is not None
        if not self._workspace.alive:
            raise WorkspaceUnavailableError("the Stockade workspace is gone")
        return self._workspace

    def _start(self) -> None:
        with self._lock:  # one workspace, however many first operations race
            if self._workspace is not None:
                return
            if self._ref is not None:
                found = _LIVE.get(self._ref.id)
                if found is None or not found.alive:
                    raise WorkspaceUnavailableError(f"no live Stockade workspace {self._ref.id!r}")
                self._workspace = found
                return
            self._workspace = self.sandbox.workspace()
            self._ref = WorkspaceRef(provider=PROVIDER, id=uuid.uuid4().hex)
            _LIVE[self._ref.id] = self._workspace

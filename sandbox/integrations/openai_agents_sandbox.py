"""An OpenAI Agents SDK sandbox client over a Stockade workspace, so a `SandboxAgent`'s shell,
file and patch tools run confined on Linux (the SDK's own `unix_local` client adds no
confinement there), with no daemon or image.

    from stockade.integrations.openai_agents_sandbox import StockadeSandboxClient
    config = RunConfig(sandbox=SandboxRunConfig(client=StockadeSandboxClient()))
    await Runner.run(SandboxAgent(name="dev", model=model), "...", run_config=config)

`StockadeSandboxClientOptions(policy)` names the policy (a `Policy`, a built-in policy's name
or a TOML file's path; "default" without options). A session is one workspace, started by
`start()`: the SDK's base class then applies the manifest into it (or restores a snapshot)
through `write`, `mkdir` and `exec`. Commands run at once in the manifest's root (inside
/workspace or /tmp, the sandbox's writable places) with the manifest's environment; a
timeout (the SDK's, under the policy's `limits.timeout` as a ceiling) is `ExecTimeoutError`, a
gone workspace `ExecTransportError`. Files go through the workspace's file calls after the SDK's
path checks; they never follow a link. Snapshots are the workspace's `export()` and
`import_()` (tar, names relative to the root). The sandbox has one user, `sandbox`: another
`user=` or manifest users and groups are refused, and there is no PTY (`supports_pty()` is
False: `exec_command` runs each command to its end). A workspace lives in this process:
`resume(state)` starts a fresh one, which `start()` hydrates from the state's snapshot when
there is one (else the manifest is applied again). The state records the policy, so a resumed
session is confined as the first was: keep a serialized state as trusted as your code.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Literal

from stockade import Policy, PolicyError, Sandbox, Workspace, WorkspaceError, WorkspaceFileError

from . import missing
from .report import exit_code, sandbox_note

try:
    from agents.sandbox import Manifest
    from agents.sandbox.errors import (
        ExecTimeoutError,
        ExecTransportError,
        WorkspaceArchiveReadError,
        WorkspaceArchiveWriteError,
        WorkspaceReadNotFoundError,
    )
    from agents.sandbox.materialization import MaterializationResult
    from agents.sandbox.session import (
        BaseSandboxClient,
        BaseSandboxClientOptions,
        BaseSandboxSession,
        Dependencies,
        Instrumentation,
        SandboxSession,
        SandboxSessionState,
    )
    from agents.sandbox.session.workspace_payloads import coerce_write_payload
    from agents.sandbox.snapshot import SnapshotBase, SnapshotSpec, resolve_snapshot
    from agents.sandbox.types import ExecResult, User
    from agents.sandbox.util.tar_utils import should_skip_tar_member
    from pydantic import Field, field_validator
except ImportError as error:
    raise missing(__name__, "openai-agents", error) from error

BACKEND = "stockade"
USER = "sandbox"  # the name the sandbox's /etc/passwd gives the run's uid, its one user
WRITABLE = (PurePosixPath("/workspace"), PurePosixPath("/tmp"))  # the sandbox's writable places
ArchiveError = type[WorkspaceArchiveReadError] | type[WorkspaceArchiveWriteError]


class StockadeSandboxClientOptions(BaseSandboxClientOptions):
    """Which policy confines the session: a `Policy`, a built-in name or a TOML path."""

    type: Literal["stockade"] = "stockade"
    policy: Policy = Field(default_factory=Policy.load)

    @field_validator("policy", mode="before")
    @classmethod
    def _load(cls, value: object) -> object:
        return Policy.load(value) if isinstance(value, str | Path) else value


class StockadeSandboxSessionState(SandboxSessionState):
    """The SDK's session state and the policy, so `resume` confines the same way."""

    type: Literal["stockade"] = "stockade"
    policy: Policy = Field(default_factory=Policy.load)


class StockadeSandboxSession(BaseSandboxSession):
    """One Stockade workspace as the SDK's session: made by `start()`, ended by `shutdown()`
    (and the client's `delete()`)."""

    state: StockadeSandboxSessionState

    def __init__(self, state: StockadeSandboxSessionState) -> None:
        self.state = state
        self._sandbox: Sandbox | None = None
        self._workspace: Workspace | None = None

    async def _ensure_backend_started(self) -> None:
        live = self._workspace is not None and self._workspace.alive
        self._set_start_state_preserved(live)  # a fresh workspace gets the manifest or snapshot
        if live:
            return
        await self._shutdown_backend()
        self._sandbox = Sandbox(self.state.policy)
        self._workspace = await asyncio.to_thread(self._sandbox.workspace)

    async def _prepare_backend_workspace(self) -> None:
        root = self.state.manifest.root
        result = await self._live().aexec(["mkdir", "-p", "--", root], cwd="/workspace")
        if not result.ok:
            raise WorkspaceArchiveWriteError(path=Path(root), context={"stderr": result.stderr})

    async def _shutdown_backend(self) -> None:
        workspace, sandbox = self._workspace, self._sandbox
        self._workspace = self._sandbox = None
        if workspace is not None:
            await asyncio.to_thread(workspace.close)
        if sandbox is not None:
            sandbox.close()

    async def _apply_manifest(
        self, *, only_ephemeral: bool = False, provision_accounts: bool = True
    ) -> MaterializationResult:
        return await super()._apply_manifest(
            only_ephemeral=only_ephemeral, provision_accounts=False
        )

    async def provision_manifest_accounts(self) -> None:
        """Nothing to do: the manifest may name only the sandbox's one user, who exists."""

    async def running(self) -> bool:
        return self._workspace is not None and self._workspace.alive

    def _prepare_exec_command(
        self, *command: str | Path, shell: bool | list[str], user: str | User | None
    ) -> list[str]:
        _own(user)  # else the base would prefix `sudo -u USER`
        return super()._prepare_exec_command(*command, shell=shell, user=None)

    async def _exec_internal(
        self, *command: str | Path, timeout: float | None = None
    ) -> ExecResult:
        # The policy's timeout is a ceiling: the SDK's (the model's `yield_time_ms`, 10 s by
        # default) applies below it, and one of 0 or less has run out already (as UnixLocal).
        limit = self.state.policy.limits.timeout
        limit = limit if timeout is None else min(timeout, limit)
        if limit <= 0:
            raise ExecTimeoutError(command=command, timeout_s=timeout)
        argv = [str(part) for part in command]
        env = await self.state.manifest.environment.resolve()
        root = self.state.manifest.root
        try:
            result = await self._live().aexec(argv, env=env, cwd=root, timeout=limit)
        except WorkspaceError as exc:
            raise ExecTransportError(command=command, context={"reason": exc.reason}) from exc
        if result.status == "timeout":
            raise ExecTimeoutError(command=command, timeout_s=limit)
        note = sandbox_note(result)
        stderr = result.stderr_bytes + (f"\n{note}".encode() if note else b"")
        return ExecResult(stdout=result.stdout_bytes, stderr=stderr, exit_code=exit_code(result))

    async def read(self, path: Path, *, user: str | User | None = None) -> io.IOBase:
        _own(user)
        target = await self._validate_path_access(path)
        with _translated(target, WorkspaceArchiveReadError):
            data = await asyncio.to_thread(self._live().read_file, target.as_posix())
        return io.BytesIO(data)

    async def write(self, path: Path, data: io.IOBase, *, user: str | User | None = None) -> None:
        _own(user)
        payload = coerce_write_payload(path=path, data=data)
        target = await self._validate_path_access(path, for_write=True)
        content = _read_at_most(payload.stream, self.state.policy.limits.file_size)
        with _translated(target, WorkspaceArchiveWriteError):
            await asyncio.to_thread(self._live().write_file, target.as_posix(), content)

    async def persist_workspace(self) -> io.IOBase:
        root = Path(self.state.manifest.root)
        with _translated(root, WorkspaceArchiveReadError):
            tar = await asyncio.to_thread(self._live().export, root.as_posix())
        return _without(tar, self._persist_workspace_skip_relpaths())

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        root = Path(self.state.manifest.root)
        tar = data.read()
        if not isinstance(tar, bytes | bytearray):
            raise WorkspaceArchiveWriteError(path=root, context={"reason": "non_bytes_tar_payload"})
        with _translated(root, WorkspaceArchiveWriteError):
            await asyncio.to_thread(self._live().import_, bytes(tar), root.as_posix())

    def _live(self) -> Workspace:
        if self._workspace is None:
            raise WorkspaceError("the session is not started (or was shut down): start() it")
        return self._workspace


class StockadeSandboxClient(BaseSandboxClient[StockadeSandboxClientOptions | None]):
    """Sessions in Stockade workspaces, for `SandboxRunConfig(client=...)`."""

    backend_id = BACKEND
    supports_default_options = True

    def __init__(
        self,
        *,
        instrumentation: Instrumentation | None = None,
        dependencies: Dependencies | None = None,
    ) -> None:
        self._instrumentation = instrumentation or Instrumentation()
        self._dependencies = dependencies

    async def create(
        self,
        *,
        snapshot: SnapshotSpec | SnapshotBase | None = None,
        manifest: Manifest | None = None,
        options: StockadeSandboxClientOptions | None = None,
    ) -> SandboxSession:
        options = options or StockadeSandboxClientOptions()
        manifest = self._validate_manifest_for_create(_checked(manifest or Manifest()))
        session_id = uuid.uuid4()
        state = StockadeSandboxSessionState(
            session_id=session_id,
            manifest=manifest,
            snapshot=resolve_snapshot(snapshot, str(session_id)),
            policy=options.policy,
        )
        return self._wrap_session(
            StockadeSandboxSession(state), instrumentation=self._instrumentation
        )

    async def delete(self, session: SandboxSession) -> SandboxSession:
        """End the session's workspace and everything in it."""
        await _inner(session).shutdown()
        return session

    async def resume(self, state: SandboxSessionState) -> SandboxSession:
        """A fresh workspace for `state`: `start()` restores its snapshot into it, or applies
        its manifest again when there is none (a workspace does not outlive its process)."""
        if not isinstance(state, StockadeSandboxSessionState):
            raise TypeError(f"resume expects a StockadeSandboxSessionState, not {type(state)}")
        state.assert_path_grants_rebound()
        _checked(state.manifest)
        state.workspace_root_ready = False  # nothing of the old workspace is there
        return self._wrap_session(
            StockadeSandboxSession(state), instrumentation=self._instrumentation
        )

    def deserialize_session_state(self, payload: dict[str, object]) -> SandboxSessionState:
        return self._deserialize_session_state_payload(payload, StockadeSandboxSessionState)


def _checked(manifest: Manifest) -> Manifest:
    """The manifest, or a ValueError naming what a Stockade workspace cannot give it."""
    root = PurePosixPath(manifest.root)
    if not root.is_absolute() or not any(root.is_relative_to(place) for place in WRITABLE):
        raise ValueError(
            f"manifest.root {manifest.root!r}: a Stockade workspace writes only inside"
            " /workspace and /tmp"
        )
    if manifest.groups or any(user.name != USER for user in manifest.users):
        raise ValueError(
            f"manifest.users and manifest.groups: a Stockade sandbox has one user, {USER!r}"
            " (the policy's uid); name only it (or no one) as the agent's run_as"
        )
    if manifest.extra_path_grants:
        raise ValueError(
            "manifest.extra_path_grants: the policy decides what the sandbox sees"
            " ([filesystem]); file calls reach /workspace and /tmp"
        )
    return manifest


def _own(user: str | User | None) -> None:
    name = user.name if isinstance(user, User) else user
    if name not in (None, USER):
        raise ValueError(f"user={name!r}: a Stockade sandbox runs everything as {USER!r}")


def _inner(session: SandboxSession) -> StockadeSandboxSession:
    inner = session._inner
    if not isinstance(inner, StockadeSandboxSession):
        raise TypeError(f"expected a Stockade session, not {type(inner).__name__}")
    return inner


@contextlib.contextmanager
def _translated(path: Path, failure: ArchiveError) -> Iterator[None]:
    """Stockade's file errors as the SDK's: ENOENT on a read is its not-found error."""
    try:
        yield
    except WorkspaceFileError as exc:
        if exc.errno == errno.ENOENT and failure is WorkspaceArchiveReadError:
            raise WorkspaceReadNotFoundError(path=path, cause=exc) from exc
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        raise failure(path=path, context={"errno": name, "reason": exc.strerror}) from exc
    except (WorkspaceError, PolicyError) as exc:  # gone, or a path or size Stockade refuses
        raise failure(path=path, context={"reason": str(exc)}) from exc


def _read_at_most(stream: io.IOBase, most: int) -> bytes:
    """The stream's bytes, but at most one past `most` (then `write_file` refuses them)."""
    chunks: list[bytes] = []
    size = 0
    while size <= most and (chunk := stream.read(most + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _without(tar: bytes, skip: set[Path]) -> io.BytesIO:
    """The tar without the members under `skip` (ephemeral entries: not persisted)."""
    if not skip:
        return io.BytesIO(tar)
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar)) as source,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as kept,
    ):
        for member in source:
            if not should_skip_tar_member(member.name, skip_rel_paths=skip, root_name=None):
                kept.addfile(member, source.extractfile(member) if member.isfile() else None)
    out.seek(0)
    return out

"""The MCP server: Stockade's runs, sessions and their files as the tools of an MCP server
(the official `mcp` SDK's `MCPServer`), for any MCP client: an agent framework, a desktop
assistant, an IDE.

    server = StockadeServer(Sandbox("default"))
    server.mcp.run("stdio")          # or `sandbox mcp`, which also serves streamable HTTP
    server.close()

Tools: `run_code(code, language)` and `exec(argv)`, each a fresh sandbox; `session_open`,
`session_run(session_id, code)`, `session_close` for a stateful interpreter, and
`session_read_file`, `session_write_file`, `session_list_files` for its files. The current
protocol keeps no session of its own (each request stands alone), so a session is named by
the `id` that `session_open` answers, passed in each call's arguments.

What the program did (its status, exit code, output) is the tool's answer, as `Result` is
the API's; only what the sandbox could not do (a policy or argument refused, a setup that
failed, a session that is gone) is a tool error. Everything is bounded by the server's own
policy, which a client cannot change: each call's limits and output size are the policy's,
a file read is capped by `limits.collect_size`, code and file writes by `limits.file_size`,
and at most `max_sessions` sessions are open at once. `close()` ends every session and the
sandbox's warm runs.

Each kind of handle registers the same tools the same way (`_add_handle_tools`): a
workspace's are `workspace_open`, `workspace_exec` (a command in it, several at once),
`workspace_read_file` and the rest; sessions and workspaces share `--max-sessions`.
"""

from __future__ import annotations

import base64
import binascii
import importlib.metadata
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal

import pydantic
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from stockade import Result, Sandbox, SandboxError, SessionError, WorkspaceError

MAX_SESSIONS = 4
INSTRUCTIONS = (
    "Runs code in Stockade, a hardened Linux sandbox: no network unless the server's policy "
    "allows it, an unprivileged user, a fresh /workspace per run, limits on time, memory and "
    "output. run_code and exec start a fresh sandbox each; session_open gives a Python "
    "interpreter that keeps its variables and files between session_run calls."
)


class RunOutput(pydantic.BaseModel):
    """A run's outcome, as `stockade.Result.to_dict()` has it (times in seconds, bytes)."""

    status: str
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    wall_time: float
    cpu_time: float
    peak_memory: int
    warnings: list[str] = []


class FileContent(pydantic.BaseModel):
    path: str
    size: int
    encoding: Literal["utf-8", "base64"]
    content: str


class Handles:
    """The open sessions (or other handles) of a server, by id: at most `most` at once; a
    handle whose sandbox has ended on its own is dropped when room is needed."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._open: dict[str, Any] = {}
        self._lock = threading.Lock()

    def add(self, kind: str, make: Callable[[], Any]) -> str:
        with self._lock:
            for handle in [h for h, o in self._open.items() if not getattr(o, "alive", True)]:
                del self._open[handle]
            if len(self._open) >= self.most:
                raise ToolError(
                    f"{len(self._open)} sessions and workspaces are open, the server's most "
                    "(sandbox mcp --max-sessions): close one first"
                )
            handle = f"{kind}-{os.urandom(8).hex()}"
            self._open[handle] = None  # the room is taken while it starts
        try:
            opened = _tool_errors(make)
        except BaseException:
            with self._lock:
                self._open.pop(handle, None)
            raise
        with self._lock:
            kept = handle in self._open  # else close_all() came while it started
            if kept:
                self._open[handle] = opened
        if not kept:
            opened.close()
            raise ToolError("the server is closing")
        return handle

    def get(self, kind: str, handle: str) -> Any:
        with self._lock:
            found = self._open.get(handle) if handle.startswith(f"{kind}-") else None
        if found is None:
            raise ToolError(f"no open {kind} {handle!r}: open one with {kind}_open")
        return found

    def pop(self, kind: str, handle: str) -> Any:
        found = self.get(kind, handle)
        with self._lock:
            self._open.pop(handle, None)
        return found

    def close_all(self) -> None:
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for item in opened:
            if item is not None:
                item.close()


class StockadeServer:
    """An `MCPServer` (`.mcp`) whose tools run in `sandbox`, under its policy. `env` is set
    in every run and session."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        max_sessions: int = MAX_SESSIONS,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if max_sessions < 0:
            raise ValueError("max_sessions must be 0 or more")
        self.sandbox = sandbox
        self.env = dict(env or {})
        self.handles = Handles(max_sessions)
        version = importlib.metadata.version("stockade")
        self.mcp = MCPServer(name="stockade", version=version, instructions=INSTRUCTIONS)
        self._add_run_tools()
        if max_sessions:
            self._add_session_tools()
            self._add_workspace_tools()

    def close(self) -> None:
        """End every open session and the sandbox's warm runs. Idempotent."""
        self.handles.close_all()
        self.sandbox.close()

    def _add_run_tools(self) -> None:
        box, env = self.sandbox, self.env

        async def run_code(
            code: str, language: Literal["python", "bash", "sh"] = "python"
        ) -> RunOutput:
            """Run source code in a fresh sandbox (written to /workspace/main.py or main.sh)
            and answer with its status, exit code and output."""
            self._check_code(code)
            return await _answer(box.arun_code(code, language, env=env))

        async def exec_(argv: list[str]) -> RunOutput:
            """Run a command (argv, no shell) in a fresh sandbox, with /workspace as its
            working directory, and answer with its status, exit code and output."""
            if not argv:
                raise ToolError("argv: give the command and its arguments, e.g. ['ls', '-l']")
            return await _answer(box.arun(argv, env=env))

        self.mcp.add_tool(run_code, annotations=_FRESH)
        exec_.__name__ = exec_.__qualname__ = "exec"
        self.mcp.add_tool(exec_, annotations=_FRESH)

    def _add_session_tools(self) -> None:
        box, handles = self.sandbox, self.handles

        def session_open() -> dict[str, str]:
            """Start a sandboxed Python interpreter that keeps its variables, imports and files
            between session_run calls; answers its id. Close it when done."""
            return {"id": handles.add("session", lambda: box.session(env=self.env))}

        async def session_run(id: str, code: str) -> RunOutput:
            """Run Python code in an open session (as a notebook cell: a last expression's
            value is shown) and answer with its status and output."""
            self._check_code(code)
            session = handles.get("session", id)
            return await _answer(session.arun(code), lambda: handles.pop("session", id))

        self.mcp.add_tool(session_open, annotations=ToolAnnotations(open_world_hint=False))
        self.mcp.add_tool(session_run, annotations=_STATEFUL)
        _add_handle_tools(self.mcp, handles, "session", lambda s, path: s.list_files(path))

    def _add_workspace_tools(self) -> None:
        box, handles = self.sandbox, self.handles

        def workspace_open() -> dict[str, str]:
            """Start a workspace: one sandbox that lives across many commands (several may
            run at once) and keeps its files between them; answers its id. Close it when
            done."""
            return {"id": handles.add("workspace", lambda: box.workspace(env=self.env))}

        async def workspace_exec(id: str, command: list[str] | str) -> RunOutput:
            """Run a command in an open workspace (an argv, or a string for /bin/sh -c) and
            answer with its status, exit code and output; its files stay for the next."""
            if not command:
                raise ToolError("command: give an argv, e.g. ['ls', '-l'], or a shell line")
            workspace = handles.get("workspace", id)
            return await _answer(workspace.aexec(command), lambda: handles.pop("workspace", id))

        self.mcp.add_tool(workspace_open, annotations=ToolAnnotations(open_world_hint=False))
        self.mcp.add_tool(workspace_exec, annotations=_STATEFUL)
        _add_handle_tools(self.mcp, handles, "workspace", _workspace_names)

    def _check_code(self, code: str) -> None:
        most = self.sandbox.policy.limits.file_size
        if len(code.encode(errors="surrogateescape")) > most:
            raise ToolError(f"code: longer than the policy's limits.file_size ({most} bytes)")


def _workspace_names(workspace: Any, path: str) -> list[str]:
    return [e.name + ("/" if e.kind == "dir" else "") for e in workspace.list(path)]


def _add_handle_tools(
    server: MCPServer, handles: Handles, kind: str, names: Callable[[Any, str], list[str]]
) -> None:
    """`{kind}_close` and the file tools of a kind of handle whose object has `close()`,
    `read_file(path)` and `write_file(path, data)`; `names(handle, path)` lists a directory
    (a directory's name ends with /)."""

    def close(id: str) -> dict[str, str]:
        handles.pop(kind, id).close()
        return {"closed": id}

    def read_file(id: str, path: str) -> FileContent:
        data = _tool_errors(lambda: handles.get(kind, id).read_file(path))
        try:
            return FileContent(path=path, size=len(data), encoding="utf-8", content=data.decode())
        except UnicodeDecodeError:
            text = base64.b64encode(data).decode()
            return FileContent(path=path, size=len(data), encoding="base64", content=text)

    def write_file(
        id: str, path: str, content: str, encoding: Literal["utf-8", "base64"] = "utf-8"
    ) -> dict[str, Any]:
        try:
            data = base64.b64decode(content, validate=True) if encoding == "base64" else content
        except binascii.Error as exc:
            raise ToolError(f"content: not base64 ({exc})") from None
        _tool_errors(lambda: handles.get(kind, id).write_file(path, data))
        return {"path": path, "written": True}

    def list_files(id: str, path: str = ".") -> dict[str, list[str]]:
        return {"names": _tool_errors(lambda: names(handles.get(kind, id), path))}

    where = f"in an open {kind} (/workspace, where a relative path starts, or /tmp)"
    tools = (
        (close, "close", f"End an open {kind} and everything in it.", _ENDS),
        (read_file, "read_file", f"Read a file {where}; binary content comes as base64.", _READS),
        (write_file, "write_file", f"Write a file {where}, replacing it.", _STATEFUL),
        (list_files, "list_files", f"List a directory {where}; directories end in /.", _READS),
    )
    for function, verb, description, hints in tools:
        function.__name__ = function.__qualname__ = f"{kind}_{verb}"  # the schemas' titles
        server.add_tool(function, name=f"{kind}_{verb}", description=description, annotations=hints)


def _tool_errors(call: Callable[[], Any]) -> Any:
    """`call()`, with what the sandbox could not do (SandboxError) as a tool error."""
    try:
        return call()
    except SandboxError as exc:
        raise ToolError(str(exc)) from None


async def _answer(call: Any, gone: Callable[[], object] | None = None) -> RunOutput:
    """A run's Result as the tool's answer; what the sandbox could not do as a tool error."""
    try:
        result: Result = await call
    except (SessionError, WorkspaceError) as exc:
        if gone is not None:
            gone()
        raise ToolError(str(exc)) from None
    except SandboxError as exc:
        raise ToolError(str(exc)) from None
    if result.status.value == "setup_failed":
        raise ToolError(f"the sandbox could not be set up: {result.error}")
    fields = result.to_dict()
    return RunOutput(**{name: fields[name] for name in RunOutput.model_fields})


_FRESH = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_STATEFUL = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_ENDS = ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False)

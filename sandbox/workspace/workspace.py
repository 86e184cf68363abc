"""Workspaces: one sandbox that lives across many commands, file operations and sessions.

    with Sandbox(policy).workspace() as ws:
        ws.write_file("data.csv", b"a,b\\n1,2\\n")
        ws.exec("wc -l data.csv").stdout == "2 data.csv\\n"

A workspace is an ordinary sandbox run (the whole security contract applies: namespaces,
mounts, the policy's uid, no capabilities, seccomp, the network allowlist, the cgroup) whose
workload is guest/agent.py, a small standard-library program that starts every request in a
process of its own. So commands run at once, each its own process tree ended by its own
timeout, and one that dies leaves the others and the workspace working. The cgroup is the
workspace's: memory and pids are limited for all its commands together, wall and CPU time for
each command's tree. /workspace and /tmp are the workspace's, shared by its commands.

It ends at `close()`, after `limits.workspace_idle` seconds with no command running and no
request (the guest exits), at `limits.workspace_lifetime` (the supervisor's wall clock), or
when its owner dies (the supervisor's PR_SET_PDEATHSIG, as for every run); then everything of
it is gone, as after any run. A thread waits for that end, so it is cleaned up at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from stockade.errors import PolicyError, WorkspaceError
from stockade.result import Result, describe_end
from stockade.spawn import running
from stockade.spawn.cancel import cancellable, tracked
from stockade.spawn.capture import Sink
from stockade.spawn.pipes import hand_over_pipes
from stockade.spawn.plan import check_argv, check_inside
from stockade.spawn.supervisor import RunReport, Started
from stockade.telemetry import Tracing
from stockade.warm import host
from stockade.warm.host import MESSAGE, Meter
from stockade.workspace import files
from stockade.workspace.command import Command, Keeper, Output
from stockade.workspace.files import Entry

if TYPE_CHECKING:
    from stockade.spawn.plan import Planner
    from stockade.warm.session import Session

# Run inside as `python3 -c SOURCE`: the package is not visible there.
SOURCE = Path(find_spec("stockade.workspace.guest.agent").origin).read_text(encoding="utf-8")
IDLE_EXIT = 87  # the guest's exit when it was idle too long (guest/agent.py)
_READY = 60.0  # seconds the guest may take to start
_GONE = 0.5  # seconds to wait for the guest's end after a keeper's, before taking it for alive
_DAY = 86_400.0


class _State:
    """What the workspace's threads share: whether it has ended, and why."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ended: str | None = None


class Workspace:
    """One long-lived sandbox. Use `Sandbox.workspace()`. Safe to share between threads and
    asyncio tasks: every call is a request of its own."""

    def __init__(
        self,
        planner: Planner,
        *,
        idle: float | None = None,
        lifetime: float | None = None,
        env: Mapping[str, str] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        limits = planner.policy.limits
        self.tracing = tracing or Tracing()
        self.idle = _seconds("idle", limits.workspace_idle if idle is None else idle)
        lifetime = limits.workspace_lifetime if lifetime is None else lifetime
        self.lifetime = _seconds("lifetime", lifetime)
        if planner.python is None:
            raise PolicyError("filesystem.python", "a workspace's guest program needs Python")
        host.check(planner, ())
        self.planner = planner
        self._env = dict(env or {})
        planner.environment(self._env)  # checked now
        self._state = _State()
        self._run, self._control, started = _launch(planner, self.lifetime)
        self.warnings = started.warnings
        self._meter = Meter(started.cgroup)
        try:
            self._handshake()
        except BaseException:
            self._run.kill()
            self._run.close()
            self._control.close()
            self._meter.close()
            raise
        self._watch = threading.Thread(
            target=_watch, args=(self._run, self._state, self.idle, self.lifetime), daemon=True
        )
        self._watch.start()
        self._finalizer = weakref.finalize(
            self, _end, self._run, self._control, self._meter, self._watch
        )

    @property
    def alive(self) -> bool:
        return self._state.ended is None

    # ------------------------------------------------------------------ commands

    def exec(
        self,
        command: Sequence[str] | str,
        *,
        stdin: bytes = b"",
        env: Mapping[str, str] | None = None,
        cwd: str = "/workspace",
        timeout: float | None = None,
        on_stdout: Output | None = None,
        on_stderr: Output | None = None,
    ) -> Result:
        """Run `command` (an argv, or a str: a shell line for /bin/sh -c) in the workspace and
        return its Result. `timeout` (the policy's `limits.timeout` by default) and the
        policy's `limits.cpu_time` end its whole process tree; processes it leaves running
        end with it. Raises `WorkspaceError` when the workspace is gone."""
        limit = self.planner.policy.limits.timeout if timeout is None else timeout
        with self.tracing.span("stockade.workspace.exec", timeout=limit) as span:
            handle = self._start(command, bytes(stdin), env, cwd, limit, on_stdout, on_stderr)
            with tracked(handle):
                result = handle.wait()
            span.result(result)
            return result

    async def aexec(self, command: Sequence[str] | str, **options: object) -> Result:
        """`exec` for asyncio: in a worker thread; cancelling the task kills the command."""
        return await cancellable(self.exec, command, **options)

    def start(
        self,
        command: Sequence[str] | str,
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = "/workspace",
        timeout: float | None = None,
        on_stdout: Output | None = None,
        on_stderr: Output | None = None,
    ) -> Command:
        """Start `command` and return at once: a `Command` whose output streams as it comes
        (iterate `.stdout`, or give `on_stdout`), with `write`, `kill()` and `wait()`. It
        runs until it ends, `timeout` (none by default) or the workspace's end. `stdin`:
        bytes to feed (then end of file), or None to `write` it yourself."""
        return self._start(command, stdin, env, cwd, timeout, on_stdout, on_stderr).background()

    def _start(
        self,
        command: Sequence[str] | str,
        stdin: bytes | None,
        env: Mapping[str, str] | None,
        cwd: str,
        timeout: float | None,
        on_stdout: Output | None,
        on_stderr: Output | None,
    ) -> Command:
        if timeout is not None and not 0 < timeout <= _DAY:
            raise PolicyError("timeout", f"a command's timeout must be in (0, {_DAY:.0f}] seconds")
        if stdin is not None and not isinstance(stdin, bytes | bytearray | memoryview):
            raise PolicyError("stdin", f"expected bytes, not {type(stdin).__name__}")
        argv = _argv(command)
        environment = self.planner.environment({**self._env, **(env or {})})
        keeper = self._exec(argv, None, environment, check_inside(cwd), timeout)
        limit = self.planner.policy.limits.output
        return Command(
            keeper,
            feed=None if stdin is None else bytes(stdin),
            limit=limit,
            timeout=timeout,
            meter=self._meter,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
        )

    def _exec(
        self,
        argv: tuple[str, ...],
        stdin: int | None,
        env: Mapping[str, str],
        cwd: str,
        timeout: float | None,
        extra: Sequence[int] = (),
        *,
        announce: bool = False,
    ) -> Keeper:
        """Send an exec request with fresh pipes (and `stdin` handed over, if given; `extra`
        fds become the command's 3, 4...); `announce`: the keeper says "started" once the
        command runs (`Keeper.started`)."""
        cpu = self.planner.policy.limits.cpu_time
        header = {"op": "exec", "argv": argv, "env": dict(env), "cwd": cwd,
                  "timeout": timeout, "cpu": cpu, "announce": announce}  # fmt: skip
        reply, stdin_w, out_r, err_r = hand_over_pipes(
            stdin, lambda stdio: self._request(header, (*stdio, *extra))
        )
        return Keeper(reply, stdin_w, out_r, err_r, argv, self._why_ended, self.warnings)

    def _inside(
        self,
        argv: Sequence[str],
        stdin: int,
        env: Mapping[str, str],
        lifetime: float,
        tools: int | None,
    ) -> Keeper:
        """A session's interpreter, started as a command of this workspace (host.Inside),
        with its tool channel (callbacks/) as its fd 3 when it has one."""
        extra = () if tools is None else (tools,)
        argv = check_argv(argv)
        return self._exec(argv, stdin, env, "/workspace", lifetime, extra, announce=True)

    def python(
        self,
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        preload: Sequence[str] = (),
        **options: object,
    ) -> Session:
        """A stateful Python session (as `Sandbox.session()`) inside this workspace: its
        code sees the workspace's files, and it ends at the latest with the workspace.
        `options` go to the `Session` as they are: `tools=[...]` gives its code host
        functions to call, as `Sandbox.session(tools=)` does (callbacks/)."""
        from stockade.warm.session import Session

        modules = (*self.planner.policy.process.preload, *preload)
        return Session(
            self.planner,
            timeout=timeout,
            env={**self._env, **(env or {})},
            preload=modules,
            lifetime=self.lifetime,
            inside=self._inside,
            **{"tracing": self.tracing, **options},  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------------ files

    def read_file(self, path: str) -> bytes:
        """A regular file's content: `path` relative to /workspace, or absolute inside
        /workspace or /tmp; a link is never followed (nor one on the way); at most the
        policy's `limits.collect_size` bytes. Raises `WorkspaceFileError` (an OSError: its
        errno says why) and `PolicyError` for a path outside."""
        cap = self.planner.policy.limits.collect_size
        return files.read(self._request, path, cap, self._file_timeout)

    def write_file(self, path: str, data: bytes | str, *, overwrite: bool = True) -> None:
        """Write `data` (str: as UTF-8) to `path` as the workload's user, making the
        directories on the way; at most `limits.file_size` bytes. `overwrite=False` refuses
        an existing file (EEXIST)."""
        most = self.planner.policy.limits.file_size
        files.write(self._request, path, data, most, self._file_timeout, overwrite=overwrite)  # type: ignore[arg-type]

    def list(self, path: str = "/workspace") -> list[Entry]:
        """The entries of a directory, sorted by name: `Entry(name, kind, size, mtime)`."""
        cap = self.planner.policy.limits.collect_size
        return files.listing(self._request, path, cap, self._file_timeout)

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file or link (the link itself), or a directory: empty, or with
        everything in it when `recursive`."""
        files.remove(self._request, path, self._file_timeout, recursive=recursive)

    def export(self, path: str = "/workspace") -> bytes:
        """The tree below `path` as tar bytes (PAX; names relative to `path`): directories,
        regular files and links (as links); at most `limits.collect_size` bytes."""
        cap = self.planner.policy.limits.collect_size
        return files.export(self._request, path, cap, self._file_timeout)

    def import_(self, tar: bytes, path: str = "/workspace") -> None:
        """Unpack tar bytes (also compressed) into `path`: directories, regular files and
        links; a member with an absolute name, "..", or of another kind is refused, and a
        link is never followed on the way. The tmpfs size and `limits.file_size` hold."""
        files.import_(self._request, tar, path, self._file_timeout)

    @property
    def _file_timeout(self) -> float:
        return max(self.planner.policy.limits.timeout, 30.0)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """End the workspace, everything running in it, and wait until it is cleaned up.
        Idempotent; commands still running on other threads end (their calls raise
        `WorkspaceError`)."""
        with self._state.lock:
            if self._state.ended is None:
                self._state.ended = "the workspace is closed"
        self._finalizer()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, header: Mapping[str, object], fds: Sequence[int]) -> socket.socket:
        """Send one request with a socket of its own (first among `fds`) for its answers."""
        data = json.dumps(header).encode()
        if len(data) > MESSAGE:
            too_big = f"the request is {len(data)} bytes, over {MESSAGE}"
            raise PolicyError("argv", f"{too_big}: pass big inputs as stdin or files")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._state.lock:
                if self._state.ended is not None:
                    raise WorkspaceError(self._state.ended)
                try:
                    socket.send_fds(self._control, [data], [theirs.fileno(), *fds])
                except OSError:
                    raise WorkspaceError("the workspace's guest is gone") from None
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def _why_ended(self) -> str | None:
        """Why the workspace has ended, or None while it lives. Asked when a keeper vanished:
        as the whole workspace ends, the guest's end of the control socket closes too (the
        guest says nothing after "ready"), and the watch then soon knows why."""
        if self._state.ended is None:
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile: ended is set
                if select.select([self._control], [], [], _GONE)[0]:
                    self._watch.join()
        return self._state.ended

    def _handshake(self) -> None:
        err = Sink(1 << 14)
        with contextlib.suppress(OSError):  # if it died already, the wait says why
            self._control.send(json.dumps({"idle": self.idle}).encode())
        deadline = time.monotonic() + _READY
        poller = select.poll()
        poller.register(self._control, select.POLLIN)
        poller.register(self._run.stderr, select.POLLIN)
        while (wait := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(wait * 1000):
                if fd == self._run.stderr:
                    chunk = os.read(fd, 4096)
                    err.add(chunk)
                    if not chunk:
                        poller.unregister(fd)
                    continue
                try:
                    data = self._control.recv(MESSAGE)
                except OSError:  # reset: it ended without reading its start; the report says why
                    data = b""
                if data and json.loads(data).get("op") == "ready":
                    return
                deadline = 0.0
                break
        self._run.kill()
        report = self._run.report()
        said = err.value().decode(errors="replace").strip().splitlines()
        how = report.setup_error or f"the guest ended ({describe_end(*_end_of(report))})"
        detail = f": {said[-1]}" if said else ""
        raise WorkspaceError(f"the workspace could not start: {how}{detail}")


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= _DAY:
        raise PolicyError(name, f"a workspace's {name} must be in (0, {_DAY:.0f}] seconds")
    return float(value)


def _argv(command: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(command, str):
        if not command.strip():
            raise PolicyError("command", "the shell line is empty")
        return ("/bin/sh", "-c", command)
    return check_argv(command)


def _launch(planner: Planner, lifetime: float) -> tuple[running.Running, socket.socket, Started]:
    """Start the workspace's run: its stdin is the guest's control socket, its wall clock
    the workspace's lifetime; CPU time is each command's (RLIMIT_CPU is set per command);
    the guest is one more process than a run has."""
    run, ours, started = host.start_guest(planner, ["python3", "-c", SOURCE], {}, lifetime, 1)
    if started is None:
        report = run.report()
        run.close()
        raise WorkspaceError(f"the workspace could not start: {report.setup_error}")
    return run, ours, started


def _watch(run: running.Running, state: _State, idle: float, lifetime: float) -> None:
    """Wait for the workspace's run to end (reaping its supervisor) and say why it did."""
    report = run.report()
    if report.exit_code == IDLE_EXIT:
        why = f"the workspace ended: idle for {idle:g} s (limits.workspace_idle)"
    elif report.timed_out:
        why = f"the workspace ended: its lifetime of {lifetime:g} s is over"
    elif report.oom_killed:
        why = "the workspace ended: its guest program was killed for memory"
    else:
        why = f"the workspace ended: its guest program ended ({describe_end(*_end_of(report))})"
    with state.lock:
        if state.ended is None:
            state.ended = why


def _end_of(report: RunReport) -> tuple[int | None, int | None]:
    return report.exit_code, report.signal


def _end(
    run: running.Running, control: socket.socket, meter: Meter, watch: threading.Thread
) -> None:
    """End the run and wait for its cleanup (the watch reaps it), then close every fd."""
    run.kill()
    watch.join()
    run.close()
    control.close()
    meter.close()

"""`Sandbox`: run / run_code / arun. Policy -> plan -> supervisor -> Result."""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from functools import cached_property
from typing import TYPE_CHECKING, Any

from . import forkserver, limits, mounts, net, running, seccomp
from .capture import Sink
from .cgroups import CgroupLimits
from .errors import PolicyError
from .plan import RunPlan
from .result import Result

if TYPE_CHECKING:
    from pathlib import Path

    from .policy import Policy
    from .pool import Pool
    from .prepared import Standby
    from .session import Session

LANGUAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "python": ("main.py", ("python3", "main.py")),
    "bash": ("main.sh", ("bash", "main.sh")),
    "sh": ("main.sh", ("sh", "main.sh")),
}
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_ARGV_BYTES = 1 << 20  # well under the kernel's ARG_MAX share for argv + env
Stdin = bytes | int | None


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
    ) -> None:
        """`pool=N` keeps N warm sandboxes for `run_code(..., "python")` (see pool.py), with
        the modules of the policy's `process.preload` and of `preload` already imported.
        `prefork` (on by default) sets up each next fresh sandbox of `run` ahead of its call,
        from the second run on (see prepared.py). `close()` ends what either keeps."""
        if policy is None or isinstance(policy, str | os.PathLike):
            from .policy import Policy  # lazily: pydantic is heavy, and the CLI passes its own

            policy = Policy.load(os.fspath(policy or "default"))
        elif isinstance(policy, Mapping):
            raise PolicyError("policy", "a dict is not a Policy: pass Policy.from_dict(data)")
        self.policy = policy
        self._standby: Standby | None = None
        if prefork:  # lazily, as the pool below: the command line never prepares a run
            import weakref

            from .prepared import Standby

            self._standby = Standby()
            weakref.finalize(self, self._standby.close)
        self.pool: Pool | None = None
        if pool:
            from .pool import Pool

            self.pool = Pool(self, pool, preload=(*policy.process.preload, *preload))

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: Stdin = b"",
        files: Mapping[str, bytes | str] | None = None,
        env: Mapping[str, str] | None = None,
        stdout_fd: int | None = None,
        stderr_fd: int | None = None,
    ) -> Result:
        """Run `argv` in a fresh sandbox. `stdin` is bytes to feed, or an fd to hand over.
        `files` land in /workspace. `stdout_fd`/`stderr_fd` forward output live instead of
        keeping it (up to the output limit either way)."""
        _check_stdin(stdin)
        plan = self.plan(argv, files=files or {}, env=env or {})
        out, err = (Sink(self.policy.limits.output, fd) for fd in (stdout_fd, stderr_fd))
        if self._standby is None:
            return _execute(plan, stdin, out, err, forkserver.launch)
        result = _execute(plan, stdin, out, err, self._standby.launch)
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
    ) -> Result:
        """Run source code: it is written to /workspace/main.py (or main.sh) and started.
        With a pool, Python runs in a warm pooled sandbox instead of a fresh one."""
        if language not in LANGUAGES:
            raise PolicyError(
                "language", f"unknown language {language!r}; known: {', '.join(LANGUAGES)}"
            )
        _check_stdin(stdin)
        if self.pool is not None and language == "python" and self.pool.here():
            return self.pool.run_code(code, stdin=stdin, files=files, env=env)
        filename, argv = LANGUAGES[language]
        return self.run(argv, stdin=stdin, files={**(files or {}), filename: code}, env=env)

    async def arun(self, argv: Sequence[str], **options: object) -> Result:
        """`run` for asyncio: the run happens in a worker thread, the loop stays free.
        Cancelling the task kills the run."""
        return await _cancellable(self.run, argv, **options)

    async def arun_code(self, code: str, language: str = "python", **options: object) -> Result:
        """`run_code` for asyncio, as `arun`."""
        return await _cancellable(self.run_code, code, language, **options)

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
        _check_stdin(stdin, data=False)
        plan = self.plan(argv, files=files or {}, env=env or {})
        return running.start(plan, stdin, self.policy.limits.output)

    def session(
        self,
        language: str = "python",
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        preload: Sequence[str] = (),
    ) -> Session:
        """A stateful interpreter in a sandbox of its own: `s.run(code)` keeps variables
        between calls (see session.py). `timeout` is each call's, the policy's by default."""
        if language != "python":
            raise PolicyError("language", f"sessions run Python only, not {language!r}")
        from .session import Session

        modules = (*self.policy.process.preload, *preload)
        return Session(self, timeout=timeout, env=env, preload=modules)

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

    def plan(
        self, argv: Sequence[str], *, files: Mapping[str, bytes | str], env: Mapping[str, str]
    ) -> RunPlan:
        """The run's plan (pure): validates the arguments and computes everything to do."""
        policy = self.policy
        checked_argv, environment = _check_argv(argv), self._environment(env)
        checked_files = _check_files(files)
        network = net.plan_network(policy.network)  # names are resolved here, once per run
        return RunPlan(
            argv=checked_argv,
            env=environment,
            root=self._plan_root(network.hosts) if network.hosts else self._root,
            rlimits=self._rlimits,
            seccomp=seccomp.compile_filters(),
            hostname=policy.process.hostname,
            timeout=policy.limits.timeout,
            cpu_time=policy.limits.cpu_time,
            cgroup_limits=CgroupLimits(memory=policy.limits.memory, pids=policy.limits.pids),
            cgroups_required=policy.limits.cgroups == "required",
            rootless=os.geteuid() != 0,
            files=checked_files,
            network=network,
        )

    @cached_property
    def _root(self) -> mounts.RootPlan:
        return self._plan_root(())

    def _plan_root(self, hosts: tuple[tuple[str, str], ...]) -> mounts.RootPlan:
        fs, process = self.policy.filesystem, self.policy.process
        runtime = fs.readonly + ((_python_prefix(),) if fs.python else ())
        return mounts.plan_mounts(
            runtime,
            uid=process.uid,
            gid=process.gid,
            hostname=process.hostname,
            hosts=hosts,
            workspace_size=fs.workspace_size,
            tmp_size=fs.tmp_size,
            inodes=fs.inodes,
        )

    @cached_property
    def _rlimits(self) -> limits.Rlimits:
        lim = self.policy.limits
        return limits.plan_rlimits(
            cpu_time=lim.cpu_time,
            file_size=lim.file_size,
            open_files=lim.open_files,
            stack=lim.stack,
        )

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        path = BASE_PATH
        if self.policy.filesystem.python:
            path = f"{_python_prefix()}/bin:{path}"
        env = {"PATH": path, "HOME": "/workspace", "TMPDIR": "/tmp"}
        env.update(self.policy.process.env)
        env.update(extra)
        for name, value in env.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise PolicyError("env", f"{name!r}: names and values must be strings")
            if not name or "=" in name or "\0" in name or "\0" in value:
                raise PolicyError("env", f"invalid variable {name!r}: NAME=VALUE, no NUL bytes")
        return env


def _python_prefix() -> str:
    # The base installation, not a virtualenv: where the interpreter and stdlib live.
    return os.path.realpath(sys.base_prefix)


def _check_argv(argv: Sequence[str]) -> tuple[str, ...]:
    if isinstance(argv, str | bytes) or not argv:
        raise PolicyError("argv", "expected a non-empty list of strings")
    checked = tuple(argv)
    if not all(isinstance(arg, str) and "\0" not in arg for arg in checked):
        raise PolicyError("argv", "every argument must be a string without NUL bytes")
    if not checked[0]:
        raise PolicyError("argv", "the program's name is empty")
    size = sum(len(arg.encode(errors="surrogateescape")) + 1 for arg in checked)
    if size > MAX_ARGV_BYTES:
        raise PolicyError(
            "argv",
            f"too large: {size} bytes (at most {MAX_ARGV_BYTES}); "
            "pass big inputs as files or stdin",
        )
    return checked


def _check_stdin(stdin: object, *, data: bool = True) -> None:
    # A bool is an int to Python: False would hand over fd 0, the caller's own stdin.
    kinds = (bytes, bytearray, memoryview, int) if data else (int,)
    if stdin is not None and (isinstance(stdin, bool) or not isinstance(stdin, kinds)):
        wanted = "bytes to feed, an fd to hand over" if data else "an fd to hand over"
        raise PolicyError("stdin", f"expected {wanted} or None, not {type(stdin).__name__}")
    if isinstance(stdin, int) and stdin < 0:
        raise PolicyError("stdin", f"{stdin} is not a file descriptor")


def _check_files(files: Mapping[str, bytes | str]) -> dict[str, bytes]:
    if not isinstance(files, Mapping):
        raise PolicyError("files", f"expected a mapping of names to contents, not {files!r:.50}")
    checked = {}
    for name, content in files.items():
        normal = posixpath.normpath(name) if isinstance(name, str) else ""
        if not normal or "\0" in normal or normal[0] == "/" or normal.split("/")[0] in (".", ".."):
            raise PolicyError(
                "files", f"{name!r}: must be a relative path inside /workspace, without NUL"
            )
        if name.endswith("/"):
            raise PolicyError("files", f"{name!r}: names a directory, not a file")
        if not isinstance(content, str | bytes | bytearray | memoryview):
            raise PolicyError("files", f"{name!r}: content must be str or bytes")
        checked[normal] = content.encode() if isinstance(content, str) else bytes(content)
    for name in checked:  # a file cannot also be a directory of others
        if (parent := next((p for p in _parents(name) if p in checked), None)) is not None:
            raise PolicyError("files", f"{name!r}: {parent!r} is a file, not a directory")
    return checked


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _execute(plan: RunPlan, stdin: Stdin, out: Sink, err: Sink, launch: running.Launch) -> Result:
    # One path for every run: start it (running.py), then capture its output to the end.
    handed = stdin if isinstance(stdin, int) else None
    run = running.start(plan, handed, out.limit, launch)
    with tracked(run):
        return run.capture(b"" if handed is not None else stdin or b"", out, err)


# What an `arun` of this context has started, to kill if its task is cancelled (the thread
# it runs in inherits the context): a run or a pooled sandbox, anything with kill().
_STARTED: ContextVar[list[Any] | None] = ContextVar("stockade_started", default=None)
_CANCELLED = object()


def cancelled() -> bool:
    """Was the `arun` this thread works for cancelled? Then start nothing more."""
    started = _STARTED.get()
    return started is not None and _CANCELLED in started


@contextlib.contextmanager
def tracked(run: Any) -> Iterator[None]:
    """While in it, a run (or a pooled sandbox at work for us) is killed if the `arun` of
    this context is cancelled; not after: a pooled sandbox goes on to serve others."""
    started = _STARTED.get()
    if started is None:
        yield
        return
    started.append(run)
    if _CANCELLED in started:  # cancelled while it was starting: the loop below missed it
        run.kill()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            started.remove(run)


async def _cancellable(call: Callable[..., Result], *args: object, **options: object) -> Result:
    import asyncio  # lazily: the command line never needs it

    started: list[Any] = []
    token = _STARTED.set(started)
    try:
        return await asyncio.to_thread(call, *args, **options)
    except asyncio.CancelledError:
        started.append(_CANCELLED)  # first: a run its thread starts from now on kills itself
        for run in [r for r in started if r is not _CANCELLED]:
            run.kill()  # its thread then sees the run end, and returns into nothing
        raise
    finally:
        _STARTED.reset(token)

"""The run, planned: plain data computed from the policy before any fork.

A `Planner` builds a `RunPlan` from the policy and the call; the supervisor and the child only
execute it (bubblewrap's "data, then interpreter"). Nothing here imports pydantic (a policy is
only read), so the spawn path stays lean. The facade, pools and sessions all plan here.

The package's records are NamedTuples, not dataclasses: a `sandbox` command pays for every
class its run creates. Measured in instructions (callgrind), a frozen dataclass costs five
times a NamedTuple, and importing `dataclasses` (with `inspect` and `ast`) costs about a
third of a bare Python start. Change a record with `_replace`. The modules on a run's path
that define records do without `from __future__ import annotations`: with it, `typing` turns
each field's annotation into a `ForwardRef` and compiles it, and the first `compile()` of a
process builds all of the AST's types, ~10% of what the command imports. A name such a module
imports only for type checking is quoted where it is used.
"""

# Not `from __future__ import annotations`: it would cost every command (see below).
import os
import posixpath
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from stockade.errors import PolicyError
from stockade.kernel import limits, mounts, namespaces, seccomp, uids
from stockade.kernel.cgroups import control as cgroups
from stockade.kernel.cgroups.base import CgroupLimits
from stockade.kernel.limits import Rlimits
from stockade.kernel.mounts import RootPlan
from stockade.net.allowlist import NetworkPlan, plan_network
from stockade.spawn import interpreter
from stockade.spawn.collect import plan_collect

if TYPE_CHECKING:
    from stockade.policy.model import Policy
    from stockade.policy.view import PolicyView


class RunPlan(NamedTuple):
    argv: tuple[str, ...]
    env: dict[str, str]
    root: RootPlan
    rlimits: Rlimits
    seccomp: tuple[bytes, ...]
    hostname: str
    timeout: float
    cpu_time: float | None
    cgroup_limits: CgroupLimits
    files: dict[str, bytes]
    cgroups_required: bool = True
    rootless: bool = False  # not root: the supervisor makes a user namespace first
    network: NetworkPlan = NetworkPlan()  # no rules: no network
    collect: str | None = None  # the files to bring back out of /workspace (collect.py)
    collect_size: int = 0  # bytes of them at most, names included
    warnings: tuple[str, ...] = ()  # for the Result: what of the policy this machine lacks
    ids: uids.IdPlan = uids.IdPlan()  # where the sandbox's uid comes from (its supervisor's)


LANGUAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "python": ("main.py", ("python3", "main.py")),
    "bash": ("main.sh", ("bash", "main.sh")),
    "sh": ("main.sh", ("sh", "main.sh")),
}
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_ARGV_BYTES = 1 << 20  # well under the kernel's ARG_MAX share for argv + env


class Planner:
    """Turns a policy and one call's arguments into a `RunPlan`. The facade, pools and
    sessions each hold one; what does not change between calls is computed once."""

    def __init__(self, policy: "Policy | PolicyView") -> None:
        """Finds the policy's interpreter and its Python packages (building them on first
        use): a PolicyError or a BuildError now, before anything runs."""
        self.policy = policy
        self.python = interpreter.find(policy.filesystem.python, policy.python.interpreter)
        self.packages = _package_dirs(policy, self.python)
        self._root: RootPlan | None = None
        self._rlimits: Rlimits | None = None
        self._missing: tuple[str, ...] | None = None

    def with_limits(self, policy: "Policy | PolicyView") -> "Planner":
        """A planner for `policy`, this one's with other limits (a call's own): the
        interpreter, packages and root found for this one serve it as they are."""
        planner = object.__new__(Planner)
        planner.__dict__.update(self.__dict__, policy=policy, _rlimits=None)
        return planner

    def plan(
        self,
        argv: Sequence[str],
        *,
        files: Mapping[str, bytes | str],
        env: Mapping[str, str],
        collect: bool | Sequence[str] | None = None,
    ) -> RunPlan:
        """The run's plan (pure): validates the arguments and computes everything to do."""
        policy = self.policy
        checked_argv, environment = check_argv(argv), self.environment(env)
        checked_files, patterns = check_files(files), plan_collect(collect)
        network = plan_network(policy.network)  # names are resolved here, once per run
        plan = RunPlan(
            argv=checked_argv,
            env=environment,
            root=self._plan_root(network.hosts) if network.hosts else self._default_root(),
            rlimits=self._plan_rlimits(),
            seccomp=seccomp.compile_filters(),
            hostname=policy.process.hostname,
            timeout=policy.limits.timeout,
            cpu_time=policy.limits.cpu_time,
            cgroup_limits=CgroupLimits(memory=policy.limits.memory, pids=policy.limits.pids),
            cgroups_required=policy.limits.cgroups == "required",
            rootless=os.geteuid() != 0,
            files=checked_files,
            network=network,
            collect=patterns,
            collect_size=policy.limits.collect_size,
            warnings=self._warnings(),
            ids=self._ids(),
        )
        require_support(plan)
        return plan

    def environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The workload's environment: the base, then the policy's, then the call's."""
        path = BASE_PATH
        if self.python is not None:
            # Its links first, then the commands installed with it (pip3, its scripts).
            scripts = f"{self.python.installation[0]}/bin"
            if scripts not in BASE_PATH.split(":"):
                path = f"{scripts}:{path}"
            path = f"{mounts.COMMANDS}:{path}"
        env = {"PATH": path, "HOME": "/workspace", "TMPDIR": "/tmp"}
        env.update(self.policy.process.env)
        env.update(extra)
        if self.packages:  # after a PYTHONPATH of the policy's or the call's own
            shown = [f"{mounts.PACKAGES}/{i}" for i in range(len(self.packages))]
            env["PYTHONPATH"] = ":".join(filter(None, (env.get("PYTHONPATH"), *shown)))
        for name, value in env.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise PolicyError("env", f"{name!r}: names and values must be strings")
            if not name or "=" in name or "\0" in name or "\0" in value:
                raise PolicyError("env", f"invalid variable {name!r}: NAME=VALUE, no NUL bytes")
        return env

    def _warnings(self) -> tuple[str, ...]:
        if self._missing is None:  # once per planner, as the root it plans from them
            self._missing = mounts.missing_paths(self.policy.filesystem.readonly)
        return tuple(
            f"filesystem.readonly: {path} does not exist on this machine; the run cannot see it"
            for path in self._missing
        )

    def _ids(self) -> "uids.IdPlan":
        process = self.policy.process
        return uids.IdPlan(process.uid, process.gid, *uids.parse_range(process.uid_range))

    def _default_root(self) -> RootPlan:
        if self._root is None:
            self._root = self._plan_root(())
        return self._root

    def _plan_root(self, hosts: tuple[tuple[str, str], ...]) -> RootPlan:
        fs, process, python = self.policy.filesystem, self.policy.process, self.python
        return mounts.plan_mounts(
            fs.readonly + (python.installation if python else ()),
            # The supervisor sets the sandbox's own ids (kernel/uids.py), before anything uses them.
            uid=process.uid or uids.NOBODY,
            gid=process.gid or process.uid or uids.NOBODY,
            hostname=process.hostname,
            hosts=hosts,
            workspace_size=fs.workspace_size,
            tmp_size=fs.tmp_size,
            inodes=fs.inodes,
            commands=python.commands() if python else (),
            packages=self.packages,
        )

    def _plan_rlimits(self) -> Rlimits:
        if self._rlimits is None:
            lim = self.policy.limits
            self._rlimits = limits.plan_rlimits(
                cpu_time=lim.cpu_time,
                file_size=lim.file_size,
                open_files=lim.open_files,
                stack=lim.stack,
            )
        return self._rlimits


def require_support(plan: RunPlan) -> None:
    """Raise UnsupportedError, with its hint, when this machine lacks a protection the plan
    asks for, before anything of the run is made: every mode (run, start, prepared runs,
    pools, sessions) plans here first. Each check is read once per process."""
    if plan.rootless:
        namespaces.require_user_namespaces()
    if plan.cgroups_required:
        cgroups.require(plan.cgroup_limits)
    if plan.network.rules and not plan.rootless:  # rootless relays without BPF
        from stockade.net import steer

        steer.require()


def _package_dirs(
    policy: "Policy | PolicyView", python: "interpreter.Interpreter | None"
) -> tuple[str, ...]:
    section = policy.python
    if not (section.site_packages or section.environment or section.requirements):
        return ()  # and a plain run imports none of the environments' code
    if python is None:
        raise PolicyError("python", "packages need the interpreter: filesystem.python is false")
    from stockade.environments.shown import package_dirs
    from stockade.environments.store import Interpreter

    return package_dirs(
        environment=section.environment,
        requirements=section.requirements,
        site_packages=section.site_packages,
        interpreter=Interpreter(python.executable, python.version),
    )


def check_argv(argv: Sequence[str]) -> tuple[str, ...]:
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


def check_stdin(stdin: object, *, data: bool = True) -> None:
    # A bool is an int to Python: False would hand over fd 0, the caller's own stdin.
    kinds = (bytes, bytearray, memoryview, int) if data else (int,)
    if stdin is not None and (isinstance(stdin, bool) or not isinstance(stdin, kinds)):
        wanted = "bytes to feed, an fd to hand over" if data else "an fd to hand over"
        raise PolicyError("stdin", f"expected {wanted} or None, not {type(stdin).__name__}")
    if isinstance(stdin, int) and stdin < 0:
        raise PolicyError("stdin", f"{stdin} is not a file descriptor")
    if isinstance(stdin, int):
        _check_stdin_fd(stdin)


def _check_stdin_fd(fd: int) -> None:
    """An fd handed over as stdin must be open for reading and not a terminal. An O_PATH fd
    reads nothing, and through /proc/self/fd/0 the workload would open the file it names
    (a terminal, which isatty does not see behind O_PATH); a directory likewise."""
    import fcntl
    import stat

    try:
        flags, mode = fcntl.fcntl(fd, fcntl.F_GETFL), os.fstat(fd).st_mode
    except OSError as exc:
        raise PolicyError("stdin", f"fd {fd} is not an open file: {exc.strerror}") from None
    if flags & os.O_PATH or stat.S_ISDIR(mode) or flags & os.O_ACCMODE == os.O_WRONLY:
        raise PolicyError("stdin", f"fd {fd} is not open for reading a file, pipe or socket")
    if os.isatty(fd):
        # A terminal handed over stays the caller's: the workload could set its line
        # discipline (N_NULL drops all later input and output), its modes, exclusive mode.
        raise PolicyError(
            "stdin",
            f"fd {fd} is a terminal, which is never handed to a sandbox (the program "
            "could change its modes and line discipline for its other users): pass its "
            "input as bytes, or through a pipe",
        )


def check_files(files: Mapping[str, bytes | str]) -> dict[str, bytes]:
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
        if normal in checked:
            raise PolicyError("files", f"{name!r}: another name given is the same file")
        checked[normal] = content.encode() if isinstance(content, str) else bytes(content)
    for name in checked:  # a file cannot also be a directory of others
        if (parent := next((p for p in _parents(name) if p in checked), None)) is not None:
            raise PolicyError("files", f"{name!r}: {parent!r} is a file, not a directory")
    return checked


def with_program(
    files: Mapping[str, bytes | str] | None, name: str, code: bytes | str
) -> dict[str, bytes | str]:
    """`files` and the program `run_code` writes as `name`, which no file given may take (it
    would be lost without a word)."""
    given = dict(files or {})
    if any(isinstance(n, str) and posixpath.normpath(n) == name for n in given):
        raise PolicyError("files", f"{name!r} is the program's own name in /workspace")
    return {**given, name: code}


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def check_inside(path: object) -> str:
    """`path` as sessions' and workspaces' file calls take it: absolute and normal, inside
    /workspace (where a relative path starts) or /tmp; `..` is refused, not resolved."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise PolicyError("path", f"expected a path without NUL bytes, not {path!r}")
    full = path if path.startswith("/") else f"/workspace/{path}"
    names = [name for name in full.split("/") if name not in ("", ".")]
    if ".." in names:
        raise PolicyError("path", f"{path!r}: '..' is not allowed")
    if not names or names[0] not in ("workspace", "tmp"):
        raise PolicyError("path", f"{path!r}: not inside /workspace or /tmp")
    return "/" + "/".join(names)

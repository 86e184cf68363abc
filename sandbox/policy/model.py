"""The policy: what a run may do, as pydantic models of a declarative TOML file.

Every field has a default and a docstring with its unit. Unknown keys, wrong units and
out-of-range values are refused with a `PolicyError` that names the key. `Policy.override`
is the only way flags change a policy, so files and flags have one source of truth.
"""

from __future__ import annotations

import json
import posixpath
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo

from stockade.environments.store import NAME, normalise
from stockade.errors import PolicyError
from stockade.kernel import uids
from stockade.kernel.mounts import DEFAULT_READONLY, OWN_PATHS
from stockade.net.allowlist import parse_entry
from stockade.policy.source import builtin_policies as builtin_policies  # the API's home
from stockade.policy.source import read_policy_text

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# Binary multiples only, spelled K or KiB: "KB" (decimal to some, binary to others) and "k"
# are refused rather than guessed.
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:iB)?)?\s*$")
SIZE_FORMS = "bytes, or a number with K, M, G, T or KiB, MiB, GiB, TiB (binary), e.g. 256M"
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_size(value: object) -> int:
    """Bytes from an int or a string such as '512K', '256M', '1GiB' (binary multiples)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 256M, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        try:
            return int(float(match[1]) * _SIZE_UNITS[match[2] or ""])
        except OverflowError:
            raise ValueError(f"{value!r} is too large") from None
    raise ValueError(f"expected a size: {SIZE_FORMS}; got {value!r}")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as '1.5', '500ms', '30s', '2m'."""
    if isinstance(value, bool):
        raise ValueError("expected a duration in seconds, not a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match[1]) * _DURATION_UNITS[match[2] or ""]
    raise ValueError(f"expected a duration such as 10, 1.5, 500ms or 2m, got {value!r}")


def parse_count(value: object) -> int:
    """A whole number from an int or a decimal string ('64'); booleans are refused."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not a boolean")
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int):
        return value
    raise ValueError(f"expected a whole number, got {value!r}")


Size = Annotated[int, BeforeValidator(parse_size)]
Count = Annotated[int, BeforeValidator(parse_count)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
_DAY = 86_400.0
_TIB = 1 << 40


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Section):
    timeout: Duration = Field(10.0, gt=0, le=_DAY)
    """Wall-clock limit in seconds for the whole run."""
    cpu_time: Duration | None = Field(10.0, gt=0, le=_DAY)
    """CPU-time limit in seconds for the whole process tree; None for none."""
    memory: Size | None = Field(256 << 20, ge=4 << 20, le=_TIB)
    """Memory limit in bytes for the whole tree (tmpfs contents count too); None for none."""
    pids: Count | None = Field(64, ge=2, le=1 << 22)
    """Most processes and threads at once, the run's init included; None for none."""
    open_files: Count = Field(256, ge=8, le=1 << 20)
    """Most open file descriptors per process (RLIMIT_NOFILE)."""
    file_size: Size = Field(64 << 20, ge=1, le=_TIB)
    """Largest file a process may write, in bytes (RLIMIT_FSIZE)."""
    stack: Size = Field(8 << 20, ge=64 << 10, le=1 << 30)
    """Stack size per process in bytes (RLIMIT_STACK)."""
    output: Size = Field(1 << 20, ge=0, le=1 << 30)
    """Most bytes kept of stdout and of stderr each; the rest is dropped, never blocking."""
    collect_size: Size = Field(16 << 20, ge=0, le=1 << 30)
    """Most bytes of files (contents and names) a run's `collect` brings back out of
    /workspace; matching files beyond it are left out and named in Result.warnings."""
    tool_calls: Count = Field(10_000, ge=0, le=1 << 24)
    """Most host tool calls (`tools=`) in one run, or in one call of a session; the code gets
    an error for each one past it, and the tool is not called."""
    tool_payload: Size = Field(1 << 20, ge=1 << 10, le=1 << 30)
    """Most bytes of one tool call's message each way, as JSON: the call with its arguments,
    and the result (or error) that goes back."""
    tool_time: Duration = Field(10.0, gt=0, le=_DAY)
    """Most seconds one tool call may take on the host; then the code gets an error (a sync
    tool cannot be stopped: it finishes in the background, its result dropped)."""
    workspace_idle: Duration = Field(600.0, gt=0, le=_DAY)
    """A workspace (`Sandbox.workspace`) ends after this many seconds with no command
    running and no request."""
    workspace_lifetime: Duration = Field(3600.0, gt=0, le=_DAY)
    """A workspace ends this many seconds after it started, whatever it is doing."""
    cgroups: Literal["required", "best_effort"] = "required"
    """'required': refuse to run without the cgroup controllers the limits need.
    'best_effort': run on rlimits alone and say in Result.warnings which limits are weaker."""


def _host_path(value: str) -> str:
    # A relative path would be joined to the new root's path by string, landing outside it.
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"expected an absolute host path, got {value!r}")
    path = "/" + posixpath.normpath(value).lstrip("/")
    if path == "/":
        raise ValueError("the sandbox's / is its own: name the host directories to show in it")
    for own in OWN_PATHS:  # each run makes these itself; a host path there would collide
        if path == own or path.startswith(own + "/") or own.startswith(path + "/"):
            raise ValueError(f"{value!r} overlaps {own}, which each run makes itself")
    return value


class Filesystem(_Section):
    readonly: tuple[Annotated[str, AfterValidator(_host_path)], ...] = DEFAULT_READONLY
    """Host paths bound read-only at the same place; a missing one is skipped, with a warning
    unless it is one of the defaults (which cover several distributions' layouts)."""
    python: StrictBool = True
    """Show the interpreter of [python] (its installation read-only, and `python3` first on
    PATH); false for none."""
    workspace_size: Size = Field(64 << 20, ge=64 << 10, le=_TIB)
    """Size cap of the writable /workspace (a per-run tmpfs), in bytes."""
    tmp_size: Size = Field(64 << 20, ge=64 << 10, le=_TIB)
    """Size cap of the writable /tmp (a per-run tmpfs), in bytes."""
    inodes: Count = Field(16_384, ge=64, le=1 << 24)
    """Most files and directories in each of /workspace and /tmp."""


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _uid_range(value: str) -> str:
    uids.parse_range(value)
    return value


class Process(_Section):
    uid: Count | None = Field(None, ge=1, le=uids.MAX_ID)
    """The workload's uid for every sandbox of this policy; never 0. Left out (None): each
    live sandbox takes a uid of its own from `uid_range`, so that none shares the kernel's
    per-user counts with another (set, a warning says they share them)."""
    gid: Count | None = Field(None, ge=1, le=uids.MAX_ID)
    """The workload's gid; never 0. Left out (None): the same number as its uid."""
    uid_range: Annotated[str, AfterValidator(_uid_range)] = uids.DEFAULT_RANGE
    """'FIRST-LAST': where a sandbox's own uid (and gid) comes from, as root. A uid that names
    a host user or group, or lies in a subordinate range of /etc/subuid or /etc/subgid, is
    skipped. The default, 0x70000000 and the 65,535 after it, is a range no distribution or
    systemd hands out."""
    hostname: str = Field("sandbox", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}$")
    """The hostname inside the sandbox."""
    env: dict[EnvName, Annotated[str, Field(pattern=r"^[^\x00]*$")]] = Field(
        default_factory=lambda: {"LANG": "C.UTF-8"}
    )
    """Variables set inside, on top of PATH, HOME and TMPDIR. Nothing of the host's."""
    preload: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$")], ...] = ()
    """Python modules that pooled sandboxes and sessions import before any run."""


def _interpreter(value: str) -> str:
    # Only the form here: whether it runs, and is Python, is asked when a Sandbox is made
    # (spawn/interpreter.py), so that a cached policy never vouches for a binary since gone.
    if "\0" in value or not value.strip() or ("/" in value and not value.startswith("/")):
        raise ValueError(
            f"expected an absolute path or a command name on this machine's PATH, got {value!r}"
        )
    return value


def _requirement(value: str) -> str:
    normalise(value)  # the syntax only; whether it installs is pip's answer, at first use
    return value


class Python(_Section):
    interpreter: Annotated[str, AfterValidator(_interpreter)] | None = None
    """The interpreter runs get as `python3` and `python`: an absolute path, or a command
    looked up on this machine's PATH, resolved through venvs and shims to its real binary.
    None (left out): the interpreter running Stockade."""
    site_packages: StrictBool = False
    """Show the caller's own packages: the running virtualenv's site-packages, read-only and
    on sys.path (not the base installation's, nor ~/.local's)."""
    environment: Annotated[str, Field(pattern=NAME.pattern)] | None = None
    """The name of an environment made with `sandbox env create NAME ...`, shown read-only
    and on sys.path; an unknown name is refused before anything runs."""
    requirements: tuple[Annotated[str, AfterValidator(_requirement)], ...] = ()
    """Requirements (pip's syntax: 'numpy', 'pandas>=2') of an environment built on first
    use into the cache and shown read-only, on sys.path; not with `environment`."""

    @model_validator(mode="after")
    def _one_environment(self) -> Python:
        if self.environment is not None and self.requirements:
            raise ValueError("give either environment or requirements, not both")
        return self


def _allow_entry(value: str) -> str:
    parse_entry(value)  # the syntax only; names are resolved and checked when a run starts
    return value


class Network(_Section):
    allow: tuple[Annotated[str, AfterValidator(_allow_entry)], ...] = ()
    """Destinations reachable over TCP: 'HOST', 'HOST:PORT', 'ADDRESS', 'ADDRESS:PORT',
    '[IPV6]:PORT', 'CIDR' or 'CIDR:PORT'. Without a port, every port."""
    allow_host_loopback: StrictBool = False
    """For local development only: let the host's loopback, its own addresses, link-local
    and metadata addresses through when the allowlist names them."""
    max_connections: Count = Field(16, ge=1, le=4096)
    """Most relayed connections open at once."""
    max_bytes: Size = Field(64 << 20, ge=1, le=_TIB)
    """Most bytes relayed in both directions over the whole run."""


class Policy(_Section):
    name: str = "custom"
    """A short name for the profile."""
    description: str = ""
    """What the profile is for."""
    limits: Limits = Field(default_factory=Limits)
    filesystem: Filesystem = Field(default_factory=Filesystem)
    process: Process = Field(default_factory=Process)
    network: Network = Field(default_factory=Network)
    python: Python = Field(default_factory=Python)

    @classmethod
    def load(cls, name_or_path: str | Path = "default") -> Policy:
        """A built-in policy by name, or a TOML file by path."""
        return cls.from_toml(*read_policy_text(str(name_or_path)))

    @classmethod
    def from_toml(cls, text: str, origin: str = "policy") -> Policy:
        """A policy from TOML text; `origin` names it in the error for invalid TOML."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(origin, f"invalid TOML: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _policy_error(exc) from None

    def to_toml(self) -> str:
        """The policy as TOML with every key and its value, which `from_toml` reads back as an
        equal policy: a starting point for one's own. A limit lifted with None (TOML has no
        null) cannot be written: a PolicyError names it."""
        lines = [f"{key} = {_toml_value(getattr(self, key))}" for key in ("name", "description")]
        sections = [name for name, value in self if isinstance(value, BaseModel)]
        for section in sections:
            model = getattr(self, section)
            lines += ["", f"[{section}]"]
            for key, field in type(model).model_fields.items():
                value = getattr(model, key)
                if value is None and field.default is None:  # left out means None
                    lines.append(f"# {key} is left out: its default")
                    continue
                if value is None:
                    raise PolicyError(f"{section}.{key}", "None (no limit) has no TOML form")
                text = _size_text(value) if _is_size(field) else _toml_value(value)
                if len(text) > 80 and isinstance(value, tuple):  # one item a line
                    text = "[\n" + "".join(f"  {_toml_value(v)},\n" for v in value) + "]"
                lines.append(f"{key} = {text}")
        return "\n".join(lines) + "\n"

    def override(self, **flags: Any) -> Policy:
        """A copy with flags applied, e.g. override(timeout=5, memory="256M")."""
        data = self.model_dump()
        for flag, value in flags.items():
            if flag not in OVERRIDES:
                raise PolicyError(flag, f"unknown override; known: {', '.join(sorted(OVERRIDES))}")
            section, key = OVERRIDES[flag]
            if key == "env":
                if not isinstance(value, Mapping):
                    raise PolicyError("env", f"expected a mapping of names to values: {value!r}")
                value = {**data[section]["env"], **value}
            data[section][key] = value
        return Policy.from_dict(data)


OVERRIDES: dict[str, tuple[str, str]] = {
    **{key: ("limits", key) for key in Limits.model_fields},
    "output_limit": ("limits", "output"),
    **{key: ("filesystem", key) for key in ("workspace_size", "tmp_size")},
    **{key: ("process", key) for key in Process.model_fields},
    "allow_net": ("network", "allow"),
    "allow_host_loopback": ("network", "allow_host_loopback"),
    **{key: ("network", key) for key in ("max_connections", "max_bytes")},
    **{key: ("python", key) for key in Python.model_fields},
}


def _is_size(field: FieldInfo) -> bool:
    """Is the field a `Size` (also as `Size | None`, whose validator pydantic keeps inside)?"""
    pending: list[Any] = [field.annotation, *field.metadata]
    while pending:
        part = pending.pop()
        if getattr(part, "func", None) is parse_size:
            return True
        pending += [*get_args(part), *getattr(part, "__metadata__", ())]
    return False


def _size_text(size: int) -> str:
    """A size as its shortest exact TOML string: 268435456 -> "256M"."""
    for unit in "TGMK":
        multiple = _SIZE_UNITS[unit]
        if size and size % multiple == 0:
            return f'"{size // multiple}{unit}"'
    return str(size)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        pairs = (f"{name} = {_toml_value(item)}" for name, item in value.items())
        return "{ " + ", ".join(pairs) + " }" if value else "{}"
    raise TypeError(f"no TOML form for {value!r}")


def _policy_error(exc: ValidationError) -> PolicyError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "policy"
    reason = first["msg"]
    if first["type"] == "extra_forbidden":
        reason = "unknown key"
    elif first["type"] == "value_error" and "error" in first.get("ctx", {}):
        reason = str(first["ctx"]["error"])  # our own message, without pydantic's prefix
    return PolicyError(field, reason)

"""Python environments built for the sandbox: where they live, their keys, names and trust.

They live in the cache directory of `disk_cache` (/var/cache/stockade for root, else
~/.cache/stockade; $STOCKADE_CACHE_DIR overrides it):

    environments/
      <key>/                  one environment, named by the SHA-256 of what it is built from
        site/                 the packages (`pip install --target`): shown read-only inside
        environment.json      what it was built from, and what was installed
      names/<NAME>            a link to ../<key>: `sandbox env create NAME ...`
      .build-*/               a build under way, renamed to <key> only once whole

The key is a digest of the interpreter (its real binary and X.Y version), the platform
(machine and C library) and the normalised requirements: the same requirements for the same
interpreter are built once, whichever policy or name asks for them, and anything else gets a
key of its own. A key is never rebuilt in place: an entry is whole or absent.

What is in an environment runs inside every sandbox that shows it, so an entry is trusted
only as `disk_cache` trusts its files: every component of its real path (up to its
`environment.json` and `site`) is owned by root or by us and not writable by group or others
(sticky directories excepted). A build takes group and others' write bits off every file
and refuses files that are not ours, so no one else can change what is below. An entry that
fails the check is not used: one built from requirements is built again, a named one is
refused until `sandbox env create` makes it again.

This module is on a run's path when a policy shows an environment: standard library only,
and only what a lookup needs (the builder, with pip and temporary directories, is build.py).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from stockade import disk_cache
from stockade.errors import PolicyError, UnsupportedError

FIELD = "python.environment"
SUBDIR = "environments"
NAMES = "names"
SITE = "site"
INFO = "environment.json"
BUILDING = ".build-"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEY = re.compile(r"^[0-9a-f]{64}$")
_MAGIC = b"stockade-environment-v1\n"
_MOST_INFO = 1 << 20
# PEP 508, as far as a key needs it: a project name, extras, then a version specifier or
# `@ URL`, then markers after `;`. A path or a pip option (`-r`, `--index-url`) is refused:
# its contents would not be in the key, and an option would change how pip runs.
_REQUIREMENT = re.compile(
    r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[([^\]]*)\])?\s*([^;]*?)\s*(?:;\s*(.*))?$"
)


class Interpreter(NamedTuple):
    """The Python an environment is built for and runs under."""

    executable: str  # its real binary
    version: tuple[int, int]


class Environment(NamedTuple):
    key: str
    path: str  # the entry's directory
    info: dict[str, Any]  # its environment.json

    @property
    def site(self) -> str:
        """The directory shown inside, on sys.path."""
        return os.path.join(self.path, SITE)


def normalise(requirement: str) -> str:
    """One requirement as the key holds it: the project's name normalised (PEP 503), extras
    sorted, no spaces in the version specifier. Raises ValueError for anything else."""
    if not isinstance(requirement, str) or "\0" in requirement or "\n" in requirement:
        raise ValueError(f"expected one requirement such as 'numpy>=2', got {requirement!r}")
    match = _REQUIREMENT.match(" ".join(requirement.split()))
    if match is None:
        raise ValueError(
            f"{requirement!r} is not a requirement such as 'pandas>=2' or 'numpy[extra]==2.1': "
            "a project name first (no paths, no pip options)"
        )
    name, extras, specifier, marker = match.groups()
    text = re.sub(r"[-_.]+", "-", name).lower()
    if extras:
        text += "[" + ",".join(sorted({e.strip().lower() for e in extras.split(",")})) + "]"
    specifier = specifier.replace(" ", "")
    if specifier.startswith("@"):
        text += " @ " + specifier[1:]
    elif specifier:
        text += specifier
    return text + (f" ; {marker}" if marker else "")


def requirement_set(requirements: Iterable[str]) -> tuple[str, ...]:
    """Normalised, without duplicates, sorted: the order of a list does not change its key."""
    return tuple(sorted({normalise(r) for r in requirements}))


def platform_tag() -> str:
    """The machine and its C library: a wheel built for one may not load on another."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or "unknown libc"
    except (ValueError, OSError):  # not glibc (musl has no such name)
        libc = "unknown libc"
    return f"{os.uname().sysname}-{os.uname().machine} {libc}"


def key_for(requirements: Sequence[str], interpreter: Interpreter) -> str:
    """The content key of an environment of these (normalised) requirements."""
    parts = [
        interpreter.executable.encode(),
        "{}.{}".format(*interpreter.version).encode(),
        platform_tag().encode(),
        *(r.encode() for r in requirements),
    ]
    return disk_cache.digest(_MAGIC, parts)


def root() -> str:
    """The directory of environments (it may not exist yet)."""
    directory = disk_cache.cache_dir()
    if directory is None:
        raise UnsupportedError(
            "a cache directory for Python environments",
            hint=f"${disk_cache.CACHE_ENV} is set but empty: unset it, or name a directory",
        )
    return os.path.join(directory, SUBDIR)


def by_key(key: str) -> Environment | None:
    """The whole, trusted environment of `key`; None if there is none (or none to trust)."""
    path = os.path.join(root(), key)
    try:
        checked = (path, os.path.join(path, SITE), os.path.join(path, INFO))
        if not all(map(disk_cache.trusted_path, checked)):
            return None
        return Environment(key, path, _read_info(os.path.join(path, INFO)))
    except (OSError, ValueError):  # absent, or not what a build writes
        return None


def by_name(name: str, interpreter: Interpreter) -> Environment:
    """The environment `sandbox env create` made as `name`, for this interpreter; else a
    PolicyError naming the field, before anything runs."""
    if not NAME.match(name):
        raise PolicyError(FIELD, f"{name!r} is not an environment name")
    link = os.path.join(root(), NAMES, name)
    try:
        if not disk_cache.trusted_path(os.path.dirname(link)):
            raise PolicyError(FIELD, f"{os.path.dirname(link)} is writable by others: not used")
        key = os.path.basename(os.readlink(link))
    except OSError:
        raise PolicyError(
            FIELD,
            f"no environment named {name!r} (`sandbox env list` shows them; "
            f"`sandbox env create {name} PKG ...` makes it)",
        ) from None
    found = by_key(key) if _KEY.match(key) else None
    if found is None:
        raise PolicyError(
            FIELD,
            f"environment {name!r} is missing or not to be trusted (owned or writable by "
            f"others); make it again with `sandbox env create {name} ...`",
        )
    built_for = Interpreter(found.info["interpreter"], tuple(found.info["version"]))
    if built_for != interpreter:
        raise PolicyError(
            FIELD,
            f"environment {name!r} was built for {built_for.executable} "
            "({}.{}), and runs use {} ({}.{}): make it again for this one".format(
                *built_for.version, interpreter.executable, *interpreter.version
            ),
        )
    return found


def names() -> dict[str, str]:
    """Each name with the key it points to."""
    found = {}
    directory = os.path.join(root(), NAMES)
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_symlink() and NAME.match(entry.name):
                    found[entry.name] = os.path.basename(os.readlink(entry.path))
    except FileNotFoundError:
        pass
    return dict(sorted(found.items()))


def entries() -> list[Environment]:
    """Every whole, trusted environment in the cache, oldest first."""
    try:
        keys = [name for name in os.listdir(root()) if _KEY.match(name)]
    except FileNotFoundError:
        return []
    found = [env for env in map(by_key, keys) if env is not None]
    return sorted(found, key=lambda env: env.info.get("created", ""))


def _read_info(path: str) -> dict[str, Any]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        info = json.loads(file.read(_MOST_INFO))
    if not isinstance(info, dict):
        raise ValueError("not an environment's description")
    return info

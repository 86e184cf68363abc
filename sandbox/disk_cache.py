"""The on-disk cache of what is slow to make and must be trusted: seccomp programs, policies.

What is cached decides what a workload may do (its syscall filter, its limits), so an entry is
trusted only where nobody but this user (or root) could have written it; anything else is
ignored, as if there were no cache:
- the directory is $STOCKADE_CACHE_DIR when set (empty: no cache), /var/cache/stockade for
  root, else $XDG_CACHE_HOME/stockade or ~/.cache/stockade; it is made 0700;
- every component of its real path is owned by root or by us, and none is writable by group
  or others unless it is sticky (like /tmp: nobody else can then move our entries);
- the file is opened without following a link; it is a regular file with one link, owned by
  us, not writable by group or others, and it names the kind and the key it was written for
  and ends with a SHA-256 of all that (which catches a torn or damaged file, not an attacker:
  the checks above do);
- it is written to a temporary file in the same directory, flushed, then renamed over the
  entry, so a reader sees an old entry or a whole new one.

Only bytes go in and out: each user of the cache encodes its own values (never with pickle,
which would run code from a file).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable

# The interpreter's own SHA-256, as `random` takes its _sha512: importing hashlib first loads
# OpenSSL's libcrypto, 3-5 ms of every command for the same digest.
try:
    from _sha2 import sha256  # Python >= 3.12
except ImportError:
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        from hashlib import sha256

CACHE_ENV = "STOCKADE_CACHE_DIR"
_LENGTH_BYTES = 4  # the length prefix of each part of a key, little-endian
_CHECKSUM = 32  # a SHA-256 digest


def cache_dir() -> str | None:
    """Where entries live; None when the cache is turned off (STOCKADE_CACHE_DIR empty)."""
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return configured or None
    if os.geteuid() == 0:
        return "/var/cache/stockade"
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stockade")


def digest(magic: bytes, parts: Iterable[bytes]) -> str:
    """A key: the SHA-256 of `magic` and each part, length-prefixed so parts cannot run into
    each other (("ab", "c") and ("a", "bc") differ)."""
    hasher = sha256(magic)
    for part in parts:
        hasher.update(len(part).to_bytes(_LENGTH_BYTES, "little") + part)
    return hasher.hexdigest()


def trusted_path(path: str) -> bool:
    """Could only root or we have written what is at `path` (a directory or a file)?"""
    me = os.geteuid()
    parts = os.path.realpath(path).split("/")
    for end in range(1, len(parts) + 1):
        info = os.lstat("/".join(parts[:end]) or "/")
        if info.st_uid not in (0, me):
            return False
        if info.st_mode & 0o022 and not (stat.S_ISDIR(info.st_mode) and info.st_mode & 0o1000):
            return False
    return True


def seal(magic: bytes, key: str, payload: bytes) -> bytes:
    """An entry's bytes: what it is (magic), which key it answers, the payload, a checksum."""
    body = magic + key.encode() + b"\n" + payload
    return body + sha256(body).digest()


def unseal(magic: bytes, key: str, data: bytes) -> bytes | None:
    """The payload of `data` if it is a whole entry of this kind for this key; else None."""
    body, checksum = data[:-_CHECKSUM], data[-_CHECKSUM:]
    head = magic + key.encode() + b"\n"
    if not body.startswith(head) or sha256(body).digest() != checksum:
        return None
    return body[len(head) :]


def read(filename: str, magic: bytes, key: str, max_size: int) -> bytes | None:
    """The payload stored under `filename` for `key`, if the entry can be trusted."""
    directory = cache_dir()
    try:
        if directory is None or not trusted_path(directory):
            return None
        fd = os.open(os.path.join(directory, filename), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not (
            stat.S_ISREG(info.st_mode)
            and info.st_nlink == 1
            and info.st_uid == os.geteuid()
            and not info.st_mode & 0o022
            and info.st_size <= max_size
        ):
            return None
        return unseal(magic, key, file.read(max_size + 1))


def write(filename: str, magic: bytes, key: str, payload: bytes) -> None:
    """Store `payload` under `filename`. Best effort: a cache that cannot be written only
    means doing the work again next time."""
    directory = cache_dir()
    if directory is None:
        return
    import tempfile  # only when something is stored: a reader never needs it

    temporary = None
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not trusted_path(directory):
            return
        fd, temporary = tempfile.mkstemp(prefix=".new-", dir=directory)  # mode 0600
        with os.fdopen(fd, "wb") as file:
            file.write(seal(magic, key, payload))
            file.flush()
            os.fsync(fd)
        os.replace(temporary, os.path.join(directory, filename))
        temporary = None
    except OSError:
        pass
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def prune(prefix: str, keep: int) -> None:
    """Remove all but the `keep` newest entries whose names start with `prefix`, so keys that
    never come back (a policy file rewritten for every run) do not pile up."""
    directory = cache_dir()
    if directory is None:
        return
    with contextlib.suppress(OSError):
        if not trusted_path(directory):
            return
        entries = [entry for entry in os.scandir(directory) if entry.name.startswith(prefix)]
        if len(entries) <= keep:
            return
        entries.sort(key=lambda entry: entry.stat(follow_symlinks=False).st_mtime_ns)
        for entry in entries[: len(entries) - keep]:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)

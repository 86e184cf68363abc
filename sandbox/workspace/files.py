"""A workspace's files, from the host: each operation is a request that a handler inside
does as the workload's own user (guest/agent.py), opening one name at a time from / and
never following a link. Contents travel through a pipe (out) or a memfd (in), never by a
host path. What comes out is untrusted data: capped here, whatever the handler says."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import socket
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from stockade.errors import PolicyError, WorkspaceFileError
from stockade.spawn.plan import check_inside
from stockade.warm.host import MESSAGE, memfd

Request = Callable[[dict[str, object], Sequence[int]], socket.socket]
_CHUNK = 65536


class Entry(NamedTuple):
    """One name in a workspace's directory (`Workspace.list`); a link is never followed."""

    name: str
    kind: str  # "file", "dir", "link" or "other" (a fifo, a socket)
    size: int  # bytes
    mtime: float  # seconds since the epoch


def path_of(path: object) -> str:
    """The absolute path a file call takes (relative paths start in /workspace)."""
    return check_inside(path)


def read(request: Request, path: str, cap: int, timeout: float) -> bytes:
    """A regular file's content, at most `cap` bytes (`limits.collect_size`)."""
    full = path_of(path)
    return _call(request, {"op": "read", "path": full, "cap": cap}, path, timeout, out=cap)[1]


def write(
    request: Request, path: str, data: bytes, most: int, timeout: float, *, overwrite: bool
) -> None:
    full = path_of(path)
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PolicyError("data", f"expected bytes or str, not {type(data).__name__}")
    if len(data) > most:
        raise PolicyError("data", f"{len(data)} bytes: over limits.file_size ({most})")
    header = {"op": "write", "path": full, "exclusive": not overwrite}
    _call(request, header, path, timeout, data=bytes(data))


def listing(request: Request, path: str, cap: int, timeout: float) -> list[Entry]:
    full = path_of(path)
    rows: list[Entry] = []

    def take(message: dict[str, object]) -> None:
        entries = message.get("entries")
        for row in entries if message.get("op") == "entries" and isinstance(entries, list) else ():
            if _plain_row(row) and len(rows) < cap:
                rows.append(Entry(row[0], row[1], int(row[2]), float(row[3])))

    _call(request, {"op": "list", "path": full, "cap": cap}, path, timeout, on_message=take)
    return sorted(rows)


def _plain_row(row: object) -> bool:
    if not isinstance(row, list) or len(row) != 4:
        return False
    name, kind, size, mtime = row
    plain = isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
    numbers = all(isinstance(n, int | float) and not isinstance(n, bool) for n in (size, mtime))
    return plain and kind in ("file", "dir", "link", "other") and numbers and "\0" not in name


def remove(request: Request, path: str, timeout: float, *, recursive: bool) -> None:
    full = path_of(path)
    if full in ("/workspace", "/tmp"):
        raise PolicyError("path", f"{path!r}: the top of /workspace or /tmp is not removed")
    _call(request, {"op": "remove", "path": full, "recursive": recursive}, path, timeout)


def export(request: Request, path: str, cap: int, timeout: float) -> bytes:
    full = path_of(path)
    return _call(request, {"op": "export", "path": full}, path, timeout, out=cap)[1]


def import_(request: Request, tar: bytes, path: str, timeout: float) -> None:
    if not isinstance(tar, bytes | bytearray | memoryview):
        raise PolicyError("tar", f"expected the archive's bytes, not {type(tar).__name__}")
    _call(request, {"op": "import", "path": path_of(path)}, path, timeout, data=bytes(tar))


def _call(
    request: Request,
    header: dict[str, object],
    path: str,
    timeout: float,
    *,
    out: int | None = None,
    data: bytes | None = None,
    on_message: Callable[[dict[str, object]], None] | None = None,
) -> tuple[dict[str, object], bytes]:
    """Send one request with its pipe (`out`: at most that many bytes come back) or memfd
    (`data`), take its answers until it ends; raise its error as a WorkspaceFileError."""
    given = -1
    if out is not None:
        mine, given = os.pipe2(os.O_CLOEXEC)
    elif data is not None:
        given = memfd(data)
    try:
        reply = request(header, [given] if given >= 0 else [])
    except BaseException:
        if out is not None:
            os.close(mine)
        raise
    finally:
        if given >= 0:
            os.close(given)
    with reply:
        pipe = mine if out is not None else None
        try:
            done, content = _answers(reply, pipe, out or 0, time.monotonic() + timeout, on_message)
        except OSError as exc:
            raise WorkspaceFileError(exc.errno or 0, exc.strerror or str(exc), path) from None
    error = done.get("error")
    if isinstance(error, dict):
        number = error.get("errno")
        number = number if isinstance(number, int) and 0 <= number < 4096 else 0
        raise WorkspaceFileError(number, str(error.get("message"))[:400], path)
    return done, content


def _answers(
    reply: socket.socket,
    pipe: int | None,
    cap: int,
    deadline: float,
    on_message: Callable[[dict[str, object]], None] | None,
) -> tuple[dict[str, object], bytes]:
    """Read the handler's answers and its pipe (`cap` bytes at most) until both end. An
    OSError here (no answer in time, over the cap) is the caller's WorkspaceFileError."""
    content, done = bytearray(), None
    readers = [reply.fileno()] + ([pipe] if pipe is not None else [])
    try:
        while readers:
            wait = deadline - time.monotonic()
            ready = select.select(readers, [], [], max(wait, 0))[0] if wait > 0 else []
            if not ready:
                raise OSError(errno.ETIMEDOUT, "no answer in time")
            if pipe in ready:
                chunk = os.read(pipe, _CHUNK)
                content += chunk
                if len(content) > cap:
                    raise OSError(errno.EFBIG, f"over {cap} bytes (limits.collect_size)")
                if not chunk:
                    readers.remove(pipe)
            if reply.fileno() in ready:
                message = _message(reply)
                if message is None:
                    readers.remove(reply.fileno())
                elif message.get("op") == "done":
                    done = message
                elif on_message is not None:
                    on_message(message)
    finally:
        if pipe is not None:
            os.close(pipe)
    if done is None:
        raise OSError(errno.EIO, "the request's handler ended without an answer")
    return done, bytes(content)


def _message(reply: socket.socket) -> dict[str, object] | None:
    """One answer; None at the end. Nonsense is dropped (an empty dict)."""
    try:
        data = reply.recv(MESSAGE)
    except OSError:
        return None
    if not data:
        return None
    with contextlib.suppress(ValueError):
        message = json.loads(data)
        if isinstance(message, dict):
            return message
    return {}

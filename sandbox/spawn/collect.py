"""Files back out: the regular files a run left in /workspace, by the caller's glob patterns.

Three halves, one concern:
- `plan_collect` (pure, on the host, before any fork): the patterns checked and made one
  regular expression over names relative to /workspace; a pattern that could name something
  outside (`..`, an absolute path) or nothing (empty) is refused up front.
- `gather` (inside the sandbox, once no process of the run is left): the run's init calls it
  after the workload's exit (child.py), a pooled run's collector after the zygote has killed
  the run (zygote.py carries a copy, held equal by tests/unit/test_zygote_constants.py). It
  walks /workspace from inside the run's own mount namespace, opening every directory and
  file relative to its parent with O_NOFOLLOW, and reads only what both lstat and fstat say is
  a regular file. So a link is never followed (one to a host path would name the sandbox's
  own view anyway, where the host's files are not), and a fifo, a socket or a device is never
  opened. A hard link to a file outside cannot exist: /workspace is a tmpfs of its own, and
  link(2) does not cross file systems.
- `Collected` (on the host): what comes out, taken as data from an untrusted side: the names
  checked, the total capped again, what was left out summed up for `Result.warnings`. The
  host never opens a path of the workload's.

What travels: ("file", name, base64 of a chunk) for each piece of a file (an empty file sends
one empty chunk), then ("end", name, "") once it is whole; ("left_out", name, why) for what
matched but is not sent. A file without its "end" (the run was ended while it was read) does
not come back, and nothing does from a run ended at its time or memory limit.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import binascii  # not base64, which costs every command its import
import os
import posixpath
import re
import stat
from collections.abc import Iterator, Sequence

from stockade.errors import PolicyError

CHUNK = 16 << 10  # bytes per message: its base64 and a name of PATH_MAX fit one 64 KiB datagram
_NAMED = 8  # left-out names listed in a warning; the rest are counted
ENDED_AT_A_LIMIT = "the run was ended at its time or memory limit: no files come back"
WORKSPACE = "/workspace"


def plan_collect(collect: bool | Sequence[str] | None) -> str | None:
    """The patterns as one regular expression over names relative to /workspace (None: collect
    nothing). `*` and `?` stay within a path segment, `**` as a whole segment spans any number
    of them, `[...]` is a class, as in pathlib; hidden files match like any other."""
    if collect is None or collect is False:
        return None
    if collect is True:
        return _ANY
    if isinstance(collect, str | bytes) or not isinstance(collect, Sequence):
        raise PolicyError("collect", f"expected True or a list of glob patterns, not {collect!r}")
    if not collect:
        return None
    return "|".join(f"(?:{_translate(pattern)})" for pattern in collect)


_ANY = r"(?:[^/]+/)*[^/]+"  # every relative name: what `**` is at the end of a pattern


def _translate(pattern: object) -> str:
    if not isinstance(pattern, str) or not pattern or "\0" in pattern:
        raise PolicyError("collect", f"{pattern!r}: expected a non-empty glob pattern")
    if pattern.startswith("/"):
        raise PolicyError("collect", f"{pattern!r}: patterns are relative to /workspace")
    if pattern.endswith("/"):
        raise PolicyError("collect", f"{pattern!r} names a directory: use {pattern + '**'!r}")
    segments = [s for s in pattern.split("/") if s not in ("", ".")]
    # `**/**` is `**`, and `**` within a segment is `*`: without repeats, the expression
    # cannot backtrack through every way of splitting a deep name.
    segments = [s if s == "**" else re.sub(r"\*+", "*", s) for s in segments]
    segments = [s for i, s in enumerate(segments) if s != "**" or segments[i - 1 : i] != ["**"]]
    if ".." in segments:
        raise PolicyError("collect", f"{pattern!r}: '..' would leave /workspace")
    if not segments:
        raise PolicyError("collect", f"{pattern!r} names no file")
    parts = []
    for index, segment in enumerate(segments):
        if segment == "**":
            parts.append(_ANY if index == len(segments) - 1 else r"(?:[^/]+/)*")
        else:
            parts.append(_segment(segment) + ("" if index == len(segments) - 1 else "/"))
    return "".join(parts)


def _segment(segment: str) -> str:
    out, i = [], 0
    while i < len(segment):
        char = segment[i]
        end = segment.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif end != -1:
            inner = segment[i + 1 : end]
            negate = inner[:1] == "!"
            body = re.escape(inner[1:] if negate else inner).replace(r"\-", "-")
            out.append(f"(?!/)[{'^' if negate else ''}{body}]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


# -- inside the sandbox: the run is over, nothing of it moves the files ------------------------


def gather(pattern: str, cap: int) -> Iterator[tuple[str, str, str]]:
    """The regular files of /workspace whose names match `pattern`, in name order, as
    ("file", name, base64 chunk) up to `cap` bytes of names and contents; ("left_out", name,
    why) for the rest. Changes the working directory: walking by fchdir and ".." has no depth
    or path-length limit, and the tree cannot move under it, as the run is over."""
    match, room = re.compile(pattern).fullmatch, cap
    os.chdir(WORKSPACE)
    stack: list[tuple[str, list[tuple[str, str]]]] = []
    prefix, left = "", _listing()
    while left or stack:
        if not left:
            os.chdir("..")
            prefix, left = stack.pop()
            continue
        name, kind = left.pop()
        path = prefix + name
        if kind == "dir":
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.fchdir(fd)
                finally:
                    os.close(fd)
                entries = _listing()
            except OSError as exc:
                yield "left_out", path + "/", f"cannot be listed: {exc.strerror}"
                continue
            stack.append((prefix, left))
            prefix, left = path + "/", entries
        elif match(path):
            if kind != "file":
                yield "left_out", path, _NOT_READ[kind]
                continue
            sent = yield from _read(name, path, room)
            room -= sent


_NOT_READ = {
    "link": "a symbolic link: never followed",
    "other": "not a regular file (a fifo, socket or device): never opened",
}


def _listing() -> list[tuple[str, str]]:
    """This directory's (name, kind) by lstat (d_type), last name first: popped in order."""
    kinds = []
    with os.scandir(".") as entries:
        for entry in entries:
            if entry.is_symlink():
                kind = "link"
            elif entry.is_dir(follow_symlinks=False):
                kind = "dir"
            elif entry.is_file(follow_symlinks=False):
                kind = "file"
            else:
                kind = "other"
            kinds.append((entry.name, kind))
    return sorted(kinds, reverse=True)


def _read(name: str, path: str, room: int) -> Iterator[tuple[str, str, str]]:
    """One file, whole or not at all; returns the bytes of the cap it took."""
    try:
        # O_NONBLOCK: should a fifo take the file's place after the listing, opening it
        # cannot hang; fstat then refuses it unread.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(name, flags)
    except OSError as exc:
        yield "left_out", path, f"cannot be opened: {exc.strerror}"
        return 0
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            yield "left_out", path, "not a regular file"
            return 0
        size = info.st_size + _size(path)
        if size > room:
            yield "left_out", path, f"{info.st_size} bytes: over limits.collect_size"
            return 0
        left = info.st_size  # its size when opened: a file that grows is read no further
        yield "file", path, ""
        while left > 0:
            chunk = os.read(fd, min(left, CHUNK))
            if not chunk:
                break
            left -= len(chunk)
            yield "file", path, binascii.b2a_base64(chunk, newline=False).decode()
        yield "end", path, ""  # whole: a file cut off by the run's end never has this
        return size
    finally:
        os.close(fd)


# -- on the host: what came out, as untrusted data ---------------------------------------------


class Collected:
    """Files as they come out of a run, checked and capped again: the names and the bytes are
    the workload's, whatever did the gathering. Holds at most `cap` bytes of names and data."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.size = 0
        self.full = False  # the other side sent more than the cap: nothing more is taken
        self._files: dict[str, bytearray] = {}
        self._whole: set[str] = set()  # the files whose "end" came
        self._left_out: list[tuple[str, str]] = []  # the first few, to name
        self._left_count = 0

    def take(self, kind: object, name: object, value: object) -> None:
        """One message as it came out; anything malformed is dropped."""
        if not isinstance(name, str) or not isinstance(value, str) or not _relative(name):
            return
        if kind == "left_out":
            self._leave_out(name, value)
        elif kind == "end" and name in self._files:
            self._whole.add(name)
        elif kind == "file" and not self.full:
            try:
                data = binascii.a2b_base64(value, strict_mode=True)
            except binascii.Error:
                return
            held = self._files.get(name)
            growth = len(data) + (_size(name) if held is None else 0)
            if self.size + growth > self.cap:  # gather never sends this much
                self.full = True
                self._files.pop(name, None)
                self._leave_out(name, "over limits.collect_size")
                return
            self.size += growth
            self._files.setdefault(name, bytearray()).extend(data)

    def message(self, message: dict[str, object]) -> None:
        """`take` for a message of a warm interpreter's (host.py): its kind is its "op"."""
        self.take(message.get("op"), message.get("name"), message.get("value"))

    def _leave_out(self, name: str, why: str) -> None:
        self._left_count += 1
        if len(self._left_out) < _NAMED:
            self._left_out.append((name, why[:200]))

    def abandon(self, why: str) -> None:
        """The run was ended at a limit: what came out may be cut anywhere, so none of it."""
        for name in self._files:
            self._leave_out(name, why)
        self._files.clear()

    def files(self) -> dict[str, bytes]:
        """The whole files; one that was cut off is left out (and named by `warnings`)."""
        for name in [name for name in self._files if name not in self._whole]:
            del self._files[name]
            self._leave_out(name, "cut off: the run ended while it was read")
        return {name: bytes(data) for name, data in self._files.items()}

    def warnings(self) -> tuple[str, ...]:
        """What was left out, named (the first few) and counted, for `Result.warnings`; ask
        after `files()`, which may leave out more."""
        if not self._left_count:
            return ()
        named = "; ".join(f"{name} ({why})" for name, why in self._left_out)
        more = self._left_count - len(self._left_out)
        rest = f"; and {more} more" if more else ""
        return (f"collect: {self._left_count} matching entries left out: {named}{rest}",)


def _size(name: str) -> int:
    return len(name.encode(errors="surrogateescape"))


def _relative(name: str) -> bool:
    """A normal relative name inside /workspace, as gather makes them (a dir ends with /)."""
    bare = name.removesuffix("/")
    return (
        bool(bare)
        and "\0" not in bare
        and not bare.startswith("/")
        and posixpath.normpath(bare) == bare
        and not bare.startswith("../")
        and bare != ".."
    )

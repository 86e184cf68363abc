"""cgroup v2, as root: which controllers we turned on in whose `cgroup.subtree_control`, so
that they go off again once no run needs them (`v2` asks for the change, this keeps the book).

A run cgroup needs memory and pids from every cgroup above it. Where they were off (the root
cgroup of a machine without systemd, say), `v2` turns them on and notes it here; when the
last run under a `stockade` directory is gone, the notes on its way up are undone, bottom
first, at each cgroup that has no child but ours (a child of someone else's may have come to
rely on the controller meanwhile: that one stays on). What was on before us is never noted,
so never turned off.

The book is a root-only file in /run (gone at reboot, with the cgroups it describes). Its
lock also orders `v2`'s preparing of a `stockade` directory against this undoing. Without
the file (no writable /run) nothing is noted, so nothing is ever turned off: safe, if untidy.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import fcntl
import json
import os
import posixpath
from collections.abc import Iterator

BOOK = "/run/stockade/cgroup-v2-enabled.json"


class Ledger:
    """The notes (cgroup directory -> controllers we enabled in its subtree_control)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.notes: dict[str, list[str]] = {}
        if fd is not None:
            with contextlib.suppress(ValueError):  # empty (new) or torn: nothing known
                self.notes = json.loads(os.pread(fd, 1 << 20, 0) or b"{}")

    def note(self, cgroup: str, enabled: frozenset[str]) -> None:
        if enabled and self.fd is not None:
            self.notes[cgroup] = sorted(set(self.notes.get(cgroup, ())) | enabled)
            self._save()

    def undo(self, top: str, base: str, keep: str) -> list[tuple[str, str]]:
        """The (cgroup, controller) pairs to turn off, bottom first, on the way from `base` up
        to `top`: only where the cgroup's children are ours alone (`keep` beside `stockade`
        in `base`, the way down elsewhere). They are crossed out of the book."""
        undo: list[tuple[str, str]] = []
        lower = None
        for cgroup in reversed(chain(top, base)):
            ours = {lower} if lower else {posixpath.join(base, keep)}
            if _children(cgroup) - ours:
                break  # and not above: turning it off there would take it from this one too
            undo += [(cgroup, c) for c in self.notes.pop(cgroup, ())]
            lower = cgroup
        if undo:
            self._save()
        return undo

    def _save(self) -> None:
        assert self.fd is not None
        data = json.dumps(self.notes).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)


@contextlib.contextmanager
def held() -> Iterator[Ledger]:
    """The book, locked for the caller's changes; a book that keeps nothing where /run
    cannot hold one."""
    try:
        os.makedirs(posixpath.dirname(BOOK), mode=0o700, exist_ok=True)
        fd = os.open(BOOK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        yield Ledger(None)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield Ledger(fd)
    finally:
        os.close(fd)


def chain(top: str, base: str) -> list[str]:
    """`top`, then each cgroup below it down to `base` (`base` is `top` or below it)."""
    found = [top]
    for part in filter(None, posixpath.relpath(base, top).split("/")):
        if part != ".":
            found.append(posixpath.join(found[-1], part))
    return found


def _children(cgroup: str) -> set[str]:
    with os.scandir(cgroup) as entries:
        return {e.path for e in entries if e.is_dir(follow_symlinks=False)}

"""Capped, non-blocking capture of a run's stdout and stderr, and feeding its stdin.

The program is never blocked on output: both pipes are drained as fast as it writes, and
bytes beyond the cap are read and dropped (the result is marked truncated). Memory held is at
most the cap per stream. Output can also be forwarded live to a file descriptor (the CLI).
"""

from __future__ import annotations

import contextlib
import os
import selectors

_CHUNK = 65536


class Sink:
    """Keeps (or forwards) at most `limit` bytes of one stream and counts the rest."""

    __slots__ = ("chunks", "forward_fd", "kept", "limit", "truncated")

    def __init__(self, limit: int, forward_fd: int | None = None) -> None:
        self.limit = limit
        self.forward_fd = forward_fd
        self.chunks: list[bytes] = []
        self.kept = 0
        self.truncated = False

    def add(self, data: bytes) -> None:
        room = self.limit - self.kept
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        if not data:
            return
        self.kept += len(data)
        if self.forward_fd is None:
            self.chunks.append(data)
        else:
            _write_all(self.forward_fd, data)

    def value(self) -> bytes:
        return b"".join(self.chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    with contextlib.suppress(BrokenPipeError):
        while view:
            view = view[os.write(fd, view) :]


def pump(
    *,
    stdin: bytes,
    stdin_fd: int | None,
    stdout_fd: int,
    stderr_fd: int,
    reply_fd: int,
    stdout: Sink,
    stderr: Sink,
) -> bytes:
    """Feed stdin, drain stdout/stderr into the sinks, and read the supervisor's reply,
    until all three streams end. Returns the reply bytes. Closes every fd it was given."""
    selector = selectors.DefaultSelector()
    reply: list[bytes] = []
    readers = {stdout_fd: stdout.add, stderr_fd: stderr.add, reply_fd: reply.append}
    for fd in readers:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    pending = memoryview(stdin)
    if stdin_fd is not None:
        os.set_blocking(stdin_fd, False)
        if pending:
            selector.register(stdin_fd, selectors.EVENT_WRITE)
        else:
            os.close(stdin_fd)
            stdin_fd = None
    try:
        while selector.get_map():
            for key, _ in selector.select():
                fd = key.fd
                if fd == stdin_fd:
                    pending = _feed(fd, pending)
                    if not pending:
                        selector.unregister(fd)
                        os.close(fd)
                        stdin_fd = None
                    continue
                data = _read(fd)
                if data:
                    readers[fd](data)
                else:
                    selector.unregister(fd)
    finally:
        selector.close()
        for fd in (*readers, stdin_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
    return b"".join(reply)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except ConnectionResetError:  # the supervisor died (SIGKILL): its reply ends here
        return b""


def _feed(fd: int, pending: memoryview) -> memoryview:
    try:
        return pending[os.write(fd, pending[:_CHUNK]) :]
    except BlockingIOError:
        return pending
    except BrokenPipeError:  # the program stopped reading its stdin: that is its right
        return memoryview(b"")

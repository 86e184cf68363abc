"""A call: what changes from one run of a `Sandbox` to the next, and how it reaches a
prepared run (prepared.py): the command, its environment and files, what to collect, and
the stdio fds (with a host-callback channel, a fourth: the workload's fd 3).

On the wire (a unix stream socket): an 8-byte length carrying the three or four fds
(SCM_RIGHTS), then the pickled `Call`. The caller sends it straight to the run's init; the
init tells its supervisor that it arrived.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import os
import pickle
import socket
import struct
from typing import NamedTuple

LENGTH = struct.Struct("!Q")  # the length before a pickle: a call here, a plan in forkserver
# stdin, stdout, stderr, and the tool channel when there is one (callbacks/): fds 0 to 3
Stdio = tuple[int, ...]


class Call(NamedTuple):
    argv: tuple[str, ...]
    env: dict[str, str]
    files: dict[str, bytes]
    collect: str | None  # the planned patterns (collect.py), None: nothing comes back


def send(channel: int, payload: bytes, stdio: Stdio) -> None:
    """Send a pickled `Call` and the stdio fds (the caller keeps its own copies). OSError
    means the receiver got nothing: once it has the fds, it answers for the call, and may
    even have run it and closed its end before this returns."""
    message = memoryview(LENGTH.pack(len(payload)) + payload)
    with socket.socket(fileno=os.dup(channel)) as sock:
        sent = socket.send_fds(sock, [message], list(stdio))  # one message wakes the init once
        with contextlib.suppress(OSError):  # gone meanwhile: it reports the call cut short
            sock.sendall(message[sent:])


def receive(channel: int) -> tuple[Call, Stdio]:
    """The call and its stdio fds; ConnectionError if the sender went away."""
    with socket.socket(fileno=os.dup(channel)) as sock:
        header, fds, _, _ = socket.recv_fds(sock, LENGTH.size, 4)
        if len(fds) not in (3, 4):
            for fd in fds:
                os.close(fd)
            raise ConnectionError("no call: the channel closed")
        header += exactly(sock, LENGTH.size - len(header))
        payload = exactly(sock, LENGTH.unpack(header)[0])
    call = pickle.loads(payload)
    assert isinstance(call, Call)
    return call, tuple(fds)


def exactly(sock: socket.socket, size: int) -> bytes:
    """`size` bytes from a stream socket; ConnectionError if it ends first."""
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("the call was cut short")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)

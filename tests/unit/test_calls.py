"""The call channel of a prepared run (spawn/call.py): what `send` promises the caller.

`Standby.launch` starts a run afresh when `send` raises, so `send` may raise only when the
receiver got nothing; once the fds are across, the receiver answers for the call (a run
started twice would write twice into the caller's pipes).
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
from collections.abc import Iterator

import pytest

from stockade.spawn import call as calls


@pytest.fixture
def stdio() -> Iterator[calls.Stdio]:
    read, write = os.pipe()
    null = os.open(os.devnull, os.O_RDWR)
    yield (null, write, write)
    for fd in (read, write, null):
        os.close(fd)


def _payload(size: int) -> bytes:
    return pickle.dumps(calls.Call(("echo", "x" * size), {"A": "1"}, {"f": b"data"}, None))


def test_a_call_and_its_fds_arrive(stdio: calls.Stdio) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        calls.send(ours.fileno(), _payload(10), stdio)
        call, fds = calls.receive(theirs.fileno())
    assert call == calls.Call(("echo", "x" * 10), {"A": "1"}, {"f": b"data"}, None)
    assert [os.fstat(fd).st_ino for fd in fds] == [os.fstat(fd).st_ino for fd in stdio]
    for fd in fds:
        os.close(fd)


def test_nothing_delivered_raises(stdio: calls.Stdio) -> None:
    ours, theirs = socket.socketpair()
    theirs.close()
    with ours, pytest.raises(OSError):
        calls.send(ours.fileno(), _payload(10), stdio)


def test_a_receiver_that_took_the_fds_and_went_is_not_an_error(stdio: calls.Stdio) -> None:
    # Larger than the socket buffer, so the rest of the call is still being sent when the
    # receiver, holding the fds, closes its end.
    ours, theirs = socket.socketpair()
    taken: list[int] = []

    def take_the_fds_and_go() -> None:
        _, fds, _, _ = socket.recv_fds(theirs, 8, 3)
        taken.extend(fds)
        theirs.close()

    receiver = threading.Thread(target=take_the_fds_and_go)
    receiver.start()
    with ours:
        calls.send(ours.fileno(), _payload(8 << 20), stdio)
    receiver.join()
    assert len(taken) == 3
    for fd in taken:
        os.close(fd)

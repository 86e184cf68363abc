"""Starting supervisors safely from any thread: fork directly, or ask the spawn server.

Forking a multi-threaded process can deadlock the child (a lock held by another thread at
fork time stays held forever). So a supervisor is forked straight from the caller only when
the caller has exactly one OS thread; otherwise it is forked by the spawn server: a small
single-threaded process, started once per caller process with fork+exec (safe from any
thread), that receives each run's plan and pipes over a private socketpair, in the manner of
multiprocessing's forkserver. Nobody else can talk to it: there is no named socket.
"""

from __future__ import annotations

import _thread
import os
import pickle
import signal
import socket
import struct
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import calls, cgroups, spawn
from .calls import Stdio
from .plan import RunPlan

if TYPE_CHECKING:
    import subprocess

_LENGTH = struct.Struct("!Q")


@dataclass
class Launched:
    reply: socket.socket  # the supervisor's pickled RunReport arrives here, then EOF
    pid: int | None  # the supervisor's pid when it is our own child, to reap


def launch(plan: RunPlan, stdio: Stdio) -> Launched:
    if _single_threaded():
        return _launch_direct(plan, stdio)
    return _server.launch(plan, stdio)


def prepare(plan: RunPlan) -> Launched:
    """A supervisor that sets the run up and waits for its call (prepared.py). Always from
    the spawn server: the caller only sends a message, and a small process forks faster."""
    return _server.launch(plan, None)


def _single_threaded() -> bool:
    # Counts OS threads, so native threads that `threading` does not know of count too.
    return len(os.listdir("/proc/self/task")) == 1


_swept_stale = False  # has this process's first supervisor removed what dead ones left?


def _launch_direct(plan: RunPlan, stdio: Stdio) -> Launched:
    global _swept_stale
    cgroups.detect()  # once per caller, inherited by every supervisor it forks
    ours, theirs = socket.socketpair()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        ours.close()
        if not _swept_stale:
            spawn.cleanup_stale()
        spawn.supervise_and_reply(plan, stdio, theirs.detach(), parent)
    _swept_stale = True
    theirs.close()
    return Launched(ours, pid)


def start_server() -> None:
    """Start this process's spawn server now rather than on the first threaded run."""
    with _server.lock:
        _server.ensure_running()


class _SpawnServer:
    """The caller's handle on its spawn server; started on first use, restarted if gone."""

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()  # threading.Lock, without importing threading
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0

    def launch(self, plan: RunPlan, stdio: Stdio | None) -> Launched:
        ours, theirs = socket.socketpair()
        with self.lock:
            control = self.ensure_running()
            socket.send_fds(control, [b"R"], [theirs.fileno(), *(stdio or ())])
        theirs.close()
        payload = pickle.dumps(plan)
        ours.sendall(_LENGTH.pack(len(payload)) + payload)
        return Launched(ours, None)

    def ensure_running(self) -> socket.socket:
        alive = self._process is not None and self._process.poll() is None
        if self._control is not None and alive and self._owner == os.getpid():
            return self._control
        import subprocess  # only to start a server: a direct run never needs it (~5 ms)

        ours, theirs = socket.socketpair()
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._process = subprocess.Popen(
            # -P and cwd="/": the caller's working directory must not shadow our package
            # (a planted sandbox/__init__.py there would run as root); -s: no user site.
            [sys.executable, "-P", "-s", "-m", "sandbox.forkserver", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # The server's environment is what /proc/1/environ of a run could show: keep
            # nothing of the caller's there.
            env={"PYTHONPATH": package_parent, "PATH": "/usr/bin:/bin"},
        )
        theirs.close()
        self._control, self._owner = ours, os.getpid()
        return ours


_server = _SpawnServer()


def serve(control: socket.socket) -> None:
    """The spawn server's loop: one supervisor process per request, until the caller goes."""
    children: set[int] = set()

    def reap(signum: int, frame: object) -> None:
        while children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)

    signal.signal(signal.SIGCHLD, reap)
    cgroups.detect()
    spawn.cleanup_stale()
    # Loaded once here, not in every supervisor of an allowlisted run (~0.2 s each).
    import pyroute2.iproute.linux  # noqa: F401

    while True:
        message, fds, _, _ = socket.recv_fds(control, 1, 4)
        if not message:
            break  # the caller is gone: stop every run, and go
        reply, *stdio = fds  # no stdio: a prepared run
        pid = os.fork()
        if pid == 0:
            control.close()
            plan = _receive_plan(reply)
            given = (stdio[0], stdio[1], stdio[2]) if stdio else None
            spawn.supervise_and_reply(plan, given, reply, os.getppid())
        children.add(pid)
        for fd in fds:
            os.close(fd)
    for pid in list(children):
        os.kill(pid, signal.SIGTERM)


def _receive_plan(fd: int) -> RunPlan:
    with socket.socket(fileno=os.dup(fd)) as channel:
        header = calls.exactly(channel, _LENGTH.size)
        plan = pickle.loads(calls.exactly(channel, _LENGTH.unpack(header)[0]))
    assert isinstance(plan, RunPlan)
    return plan


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))

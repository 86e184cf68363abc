"""Starting supervisors safely from any thread: fork directly, or ask the spawn server.

Forking a multi-threaded process can deadlock the child (a lock held by another thread at
fork time stays held forever). So a supervisor is forked straight from the caller only when
the caller has exactly one OS thread; otherwise it is forked by the spawn server: a small
single-threaded process, started once per caller process with fork+exec (safe from any
thread), that receives each run's plan and pipes over a private socketpair, in the manner of
multiprocessing's forkserver. Nobody else can talk to it: there is no named socket.

A user on cgroup v2 with no delegated subtree has every run started by the server, which
first moves into a transient systemd scope of its own (kernel/cgroups/scope.py): the caller
itself never changes cgroup.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import _thread
import os
import pickle
import signal
import socket
import sys
from typing import TYPE_CHECKING, NamedTuple

from stockade.kernel.cgroups import control as cgroups
from stockade.spawn import call as calls
from stockade.spawn import supervisor as spawn
from stockade.spawn.call import Stdio
from stockade.spawn.plan import RunPlan

if TYPE_CHECKING:
    import subprocess


class Launched(NamedTuple):
    reply: socket.socket  # the supervisor's pickled RunReport arrives here, then EOF
    pid: int | None  # the supervisor's pid when it is our own child, to reap
    call: socket.socket | None = None  # a prepared run's: its call goes straight to its init


def launch(plan: RunPlan, stdio: Stdio) -> Launched:
    # A caller with no delegated cgroup stays where it is: its runs are started by the spawn
    # server, in a systemd scope of the server's own (kernel/cgroups/scope.py).
    if _single_threaded() and cgroups.for_runs().scope_bus is None:
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
        self._pickled: tuple[RunPlan, bytes] | None = None
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0

    def launch(self, plan: RunPlan, stdio: Stdio | None) -> Launched:
        """Without `stdio`, a prepared run: the init's end of its call channel goes instead."""
        ours, theirs = socket.socketpair()
        call, init_end = socket.socketpair() if stdio is None else (None, None)
        passed = [theirs] if init_end is None else [theirs, init_end]
        kind = b"N" if plan.network.rules else b"R"  # N: an allowlist, which needs pyroute2
        with self.lock:
            control = self.ensure_running()
            socket.send_fds(control, [kind], [s.fileno() for s in passed] + list(stdio or ()))
        for sock in passed:
            sock.close()
        payload = self._pickle(plan)
        ours.sendall(calls.LENGTH.pack(len(payload)) + payload)
        return Launched(ours, None, call)

    def _pickle(self, plan: RunPlan) -> bytes:
        # A Sandbox prepares the same plan again and again: keep the last one's pickle
        # (~0.15 ms each time, in the caller's run).
        last = self._pickled
        if last is None or last[0] != plan:
            last = self._pickled = (plan, pickle.dumps(plan))
        return last[1]

    def ensure_running(self) -> socket.socket:
        alive = self._process is not None and self._process.poll() is None
        if self._control is not None and alive and self._owner == os.getpid():
            return self._control
        import subprocess  # only to start a server: a direct run never needs it (~5 ms)

        ours, theirs = socket.socketpair()
        bus = cgroups.for_runs().scope_bus
        self._process = subprocess.Popen(
            # -P and cwd="/": the caller's working directory must not shadow our package
            # (a planted stockade/__init__.py there would run as root); -s: no user site.
            [
                sys.executable,
                "-P",
                "-s",
                "-m",
                __name__,
                str(theirs.fileno()),
                *([bus] if bus else []),
            ],
            pass_fds=[theirs.fileno()],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # The server's environment is what /proc/1/environ of a run could show: keep
            # nothing of the caller's there.
            env={"PYTHONPATH": _package_parent(), "PATH": "/usr/bin:/bin"},
        )
        theirs.close()
        self._control, self._owner = ours, os.getpid()
        return ours


def _package_parent() -> str:
    # Where this process found `stockade`, for the server to find the same one. (An editable
    # install is found through site-packages as well, which the server shares.)
    import importlib.util

    spec = importlib.util.find_spec(__name__.partition(".")[0])
    assert spec is not None and spec.submodule_search_locations is not None
    return os.path.dirname(spec.submodule_search_locations[0])


_server = _SpawnServer()


def serve(control: socket.socket, scope_bus: str | None = None) -> None:
    """The spawn server's loop: one supervisor process per request, until the caller goes.
    With `scope_bus`, it first moves into a systemd scope asked for there."""
    if scope_bus is not None:
        cgroups.enter_scope(scope_bus)
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
    # A terminal's Ctrl-C goes to the caller's whole process group, us included: the caller
    # decides what it ends (its runs are killed through their channels; we go when it
    # does), so neither we nor the supervisors we fork die of it halfway, with a traceback.
    # A workload still gets SIGINT's default disposition (the child's posix_spawn resets it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cgroups.detect()
    spawn.cleanup_stale()
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1, 5)
        if not message:
            break  # the caller is gone: stop every run, and go
        if message == b"N":
            # Loaded here, once, not in every supervisor of an allowlisted run (~0.2 s each);
            # and only then: it doubles this process's size, and every fork's and exit's cost.
            import pyroute2.iproute.linux  # noqa: F401
        reply, *rest = fds  # then stdio, or a prepared run's call channel
        pid = os.fork()
        if pid == 0:
            control.close()
            plan = _receive_plan(reply)
            if len(rest) >= 3:  # stdio, and maybe the tool channel
                spawn.supervise_and_reply(plan, tuple(rest), reply, os.getppid())
            else:
                spawn.supervise_and_reply(plan, None, reply, os.getppid(), call=rest[0])
        children.add(pid)
        for fd in fds:
            os.close(fd)
    for pid in list(children):
        os.kill(pid, signal.SIGTERM)


def _receive_plan(fd: int) -> RunPlan:
    with socket.socket(fileno=os.dup(fd)) as channel:
        header = calls.exactly(channel, calls.LENGTH.size)
        plan = pickle.loads(calls.exactly(channel, calls.LENGTH.unpack(header)[0]))
    assert isinstance(plan, RunPlan)
    return plan


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), *sys.argv[2:3])

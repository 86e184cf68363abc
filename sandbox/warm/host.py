"""A warm Python interpreter in a sandbox of its own: the host's end of zygote.py.

`Warm.start` starts an ordinary sandbox run (`running.start`: every protection of the security
contract applies) whose workload is `zygote.py` in pool or session mode, and waits until it is
ready. Its control socket is the run's stdin (SOCK_SEQPACKET, one JSON message per datagram);
a request is a JSON header line and its payload (code, files, environment), inline or in a
memfd beside it, sent to a session's interpreter on that socket, or for a pooled run straight
to the zygote's prepared child on the socket that came with the zygote's "ready". The run's
stdout and stderr pipes carry the code's output straight to us, capped by the same `Sink` as
any run. Nothing from inside is unpickled: messages are JSON, bounded and checked.

Accounting comes from the sandbox's cgroup (the supervisor's `Started` message names it):
per-request peak memory (v1: `memory.max_usage_in_bytes`, reset before each request; v2:
`memory.peak` where the kernel lets us reset it, else the interpreter's own maxrss), OOM kills
(the counter's change), and CPU time of the whole tree for the CPU-time limit.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import resource
import select
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

from stockade.callbacks.broker import GUEST_SOURCE
from stockade.errors import PolicyError, SandboxError
from stockade.kernel.cgroups import layout as cgroup_layout
from stockade.kernel.cgroups import v1, v2
from stockade.kernel.cgroups.base import Cgroup
from stockade.result import Result, decode_wait_status, describe_end
from stockade.spawn import running
from stockade.spawn.capture import Sink
from stockade.spawn.supervisor import RunReport, Started

if TYPE_CHECKING:
    from stockade.spawn.plan import Planner

# Run inside as `python3 -c SOURCE`: the package is not visible there.
SOURCE = Path(find_spec("stockade.warm.guest.zygote").origin).read_text(encoding="utf-8")
MESSAGE = 1 << 16  # the largest datagram either side reads (zygote.MESSAGE)
_TICK = 0.05  # seconds between checks of the CPU time while a request runs
_INLINE = 60_000  # payloads up to this size travel in the request's datagram
_QUIET = 0.005  # seconds a request runs before its output is read as it comes
_PIPE = 1 << 20  # bytes of the output pipes' buffers (the usual most for a user)
_CHUNK = 65536


# Starts argv in a sandbox that exists already, with this stdin (the control socket), this
# environment, for at most this many seconds, with this fd 3 (a tool channel) if any: a
# workspace's (workspace/command.py's Keeper).
Inside = Callable[[Sequence[str], int, Mapping[str, str], float, "int | None"], running.Running]


class StartFailed(SandboxError):
    """A warm interpreter could not be started; `result` says why, as a setup_failed run."""

    def __init__(self, result: Result) -> None:
        self.result = result
        super().__init__(result.error or "the warm interpreter could not be started")


OLDEST_PYTHON = (3, 10)  # zygote.py's language (zip's strict=)


def check(planner: Planner, preload: Sequence[str]) -> None:
    """Up front, for pools and sessions alike: the policy's interpreter can run zygote.py,
    and each name of `preload` goes into an import statement."""
    python = planner.python
    if python is not None and python.version < OLDEST_PYTHON:
        raise PolicyError(
            "python.interpreter",
            "pools and sessions need Python {}.{} or later; {} is {}.{}".format(
                *OLDEST_PYTHON, python.executable, *python.version
            ),
        )
    for name in preload:
        if not isinstance(name, str) or not all(p.isidentifier() for p in name.split(".")):
            raise PolicyError("preload", f"{name!r} is not a module name")


@functools.cache
def pool_filter() -> bytes:
    """One more seccomp program for pooled sandboxes, stacked on the default one: refuse
    mq_open. POSIX message queues live in the IPC namespace, which serial runs on one pooled
    sandbox share, and without an mqueue mount they cannot be listed to be removed."""
    import errno
    import tempfile

    import pyseccomp

    flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    flt.add_rule(pyseccomp.ERRNO(errno.EPERM), "mq_open")
    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


class Meter:
    """Per-request numbers from the sandbox's cgroup, read through fds opened once."""

    def __init__(self, cgroup: Cgroup | None) -> None:
        self._cpu = self._oom = self._peak = None
        self._cpu_scale, self._oom_key = 1.0, "oom_kill"
        self._resettable = False
        with contextlib.suppress(OSError, KeyError):
            if isinstance(cgroup, v1.CgroupV1):
                self._cpu, self._cpu_scale = self._open(cgroup.dirs["cpu"], "cpuacct.usage"), 1e-9
                memory = cgroup.dirs["memory"]
                self._oom = self._open(memory, "memory.oom_control")
                self._peak = self._open(memory, "memory.max_usage_in_bytes", os.O_RDWR)
                self._resettable = True
            elif isinstance(cgroup, v2.CgroupV2):
                self._cpu, self._cpu_scale = self._open(cgroup.path, "cpu.stat"), 1e-6
                self._oom = self._open(cgroup.path, "memory.events")
                try:  # resettable per fd since Linux 6.12
                    self._peak = self._open(cgroup.path, "memory.peak", os.O_RDWR)
                    self._resettable = True
                except OSError:
                    self._peak = None

    @staticmethod
    def _open(directory: str, name: str, flags: int = os.O_RDONLY) -> int:
        return os.open(f"{directory}/{name}", flags | os.O_CLOEXEC | os.O_NOFOLLOW)

    def cpu(self) -> float | None:
        if self._cpu is None:
            return None
        with contextlib.suppress(OSError, ValueError, KeyError):
            text = os.pread(self._cpu, 4096, 0).decode()
            value = cgroup_layout.keyed(text)["usage_usec"] if " " in text else int(text)
            return value * self._cpu_scale
        return None

    def oom_kills(self) -> int | None:
        if self._oom is None:
            return None
        with contextlib.suppress(OSError):
            return cgroup_layout.keyed(os.pread(self._oom, 4096, 0).decode()).get(self._oom_key, 0)
        return None

    def reset_peak(self) -> None:
        if self._peak is not None and self._resettable:
            try:
                os.pwrite(self._peak, b"0", 0)
            except OSError:
                self._resettable = False

    def peak(self) -> int | None:
        if self._peak is None or not self._resettable:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int(os.pread(self._peak, 64, 0))
        return None

    @property
    def complete(self) -> bool:
        """Does the cgroup give both the CPU time and a per-request peak?"""
        return self._cpu is not None and self._peak is not None and self._resettable

    def close(self) -> None:
        for fd in (self._cpu, self._oom, self._peak):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._cpu = self._oom = self._peak = None

    __del__ = close  # a session dropped unclosed: its run's fds go with the Running's


class Outcome(NamedTuple):
    """One request, as the host saw it."""

    done: dict[str, object] | None  # the interpreter's answer; None: it died or was killed
    wall: float  # seconds, measured here
    hard_killed: bool  # we killed the whole sandbox (its deadline and grace had passed)
    cpu_exceeded: bool  # the tree's CPU time passed the limit
    oom_kills: int  # OOM kills in the sandbox's cgroup during the request
    peak: int | None  # the sandbox's peak memory during the request, when the cgroup says
    cpu: float | None  # the sandbox's CPU time during the request, when the cgroup says


def start_guest(
    planner: Planner,
    argv: list[str],
    env: Mapping[str, str] | None,
    lifetime: float,
    extra_pids: int,
    tools: int | None = None,
) -> tuple[running.Running, socket.socket, Started | None]:
    """Start a long-lived program of ours (a pooled interpreter, a session, a workspace's
    guest) in a sandbox of its own: its stdin is the other end of the control socket
    returned, its wall clock `lifetime`, its CPU time each request's own (RLIMIT_CPU set per
    request, the tree's read from the cgroup), `extra_pids` more processes than a run has.
    `Started` is None when its setup failed: the socket is closed then, and the run says
    why."""
    plan = planner.plan(argv, files={}, env=env or {})
    limits = plan.cgroup_limits
    plan = plan._replace(
        timeout=lifetime,
        cpu_time=None,
        rlimits=tuple(r for r in plan.rlimits if r[0] != resource.RLIMIT_CPU),
        cgroup_limits=limits._replace(pids=limits.pids + extra_pids if limits.pids else None),
    )
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        run = running.start(plan, theirs.fileno(), planner.policy.limits.output, tools=tools)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    started = run.started()
    if started is None:
        ours.close()
    return run, ours, started


class Warm:
    """One warm interpreter; one request at a time (the pool or session serialises them)."""

    def __init__(self, run: running.Running, control: socket.socket, meter: Meter) -> None:
        self.run, self.control, self.meter = run, control, meter
        self.warnings: tuple[str, ...] = ()
        self.pooled = False  # a zygote, which hands us each prepared run's socket
        self.shared = False  # in a sandbox of others' (a workspace's): it ends none of theirs
        self.born = time.monotonic()
        self.requests = 0
        self.clean = False  # ready for a request: said "ready" since the last one
        self._next: socket.socket | None = None  # the prepared pooled run's request socket
        self._spent: socket.socket | None = None  # the last one's, to close
        self._closed = False
        self._lock = threading.Lock()
        for fd in (run.stdout, run.stderr):
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError):  # room for a short run's whole output
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE)

    @classmethod
    def start(
        cls,
        planner: Planner,
        mode: Literal["pool", "session"],
        *,
        preload: Sequence[str] = (),
        lifetime: float,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 60.0,
        tools: int | None = None,
        inside: Inside | None = None,
    ) -> Warm:
        """Start the sandbox and wait until the interpreter is ready. Raises `StartFailed`
        (setup failed, or the interpreter died starting) and `PolicyError` (a bad argument).
        `tools`: a session's end of its tool channel (callbacks/), its fd 3. `inside` starts
        the interpreter in a sandbox that exists already (a workspace's) instead: shared with
        other processes, it ends none of theirs, and measures itself."""
        if inside is not None:
            return cls._start_inside(inside, planner, preload, lifetime, env, ready_timeout, tools)
        extra = 1 if mode == "pool" else 0  # the zygote is one more process than a run has
        argv = ["python3", "-c", SOURCE, mode]
        run, ours, started = start_guest(planner, argv, env, lifetime, extra, tools)
        if started is None:
            raise StartFailed(_failure(run, "", ""))
        warm = cls(run, ours, Meter(started.cgroup))
        warm.pooled = mode == "pool"
        warm.warnings = started.warnings
        try:
            warm._handshake(mode, preload, ready_timeout, tools is not None)
        except BaseException:
            warm.close()
            raise
        return warm

    @classmethod
    def _start_inside(
        cls,
        inside: Inside,
        planner: Planner,
        preload: Sequence[str],
        lifetime: float,
        env: Mapping[str, str] | None,
        ready_timeout: float,
        tools: int | None,
    ) -> Warm:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = ("python3", "-c", SOURCE, "session")
            environment = planner.environment(env or {})
            run = inside(argv, theirs.fileno(), environment, lifetime, tools)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        warm = cls(run, ours, Meter(None))  # type: ignore[arg-type]
        warm.shared = True
        try:
            started = run.started()
            if started is None:
                raise StartFailed(_failure(run, "", ""))  # type: ignore[arg-type]
            warm.warnings = started.warnings
            warm._handshake("session", preload, ready_timeout, tools is not None)
        except BaseException:
            warm.close()
            raise
        return warm

    def _handshake(self, mode: str, preload: Sequence[str], timeout: float, tools: bool) -> None:
        fds = [memfd(pool_filter())] if mode == "pool" else []
        try:
            init: dict[str, object] = {"preload": list(preload), "early": self.meter.complete}
            init["shared"] = self.shared
            if mode == "pool" or tools:  # any pooled run may be given tools: compiled once
                init["tools"] = GUEST_SOURCE
            with contextlib.suppress(OSError):  # if it died already, the wait says why
                socket.send_fds(self.control, [json.dumps(init).encode()], fds)
        finally:
            for fd in fds:
                os.close(fd)
        out, err = Sink(1 << 16), Sink(1 << 16)
        message = self._wait_message(time.monotonic() + timeout, out, err)
        if message is None or message.get("op") != "ready":
            self.kill()
            detail = err.value().decode(errors="replace").strip().splitlines()
            raise StartFailed(_failure(self.run, mode, detail[-1] if detail else ""))
        self.clean = True

    def ready(self, timeout: float) -> bool:
        """After a pooled request: wait for the interpreter's "ready" (it has cleaned up)."""
        if not self.clean:
            message = self._wait_message(time.monotonic() + timeout, None, None)
            self.clean = message is not None and message.get("op") == "ready"
        return self.clean

    def request(
        self,
        message: dict[str, object],
        payload: bytes,
        fds: Sequence[int] = (),
        *,
        timeout: float,
        grace: float,
        cpu_time: float | None,
        out: Sink,
        err: Sink,
        start: Mapping[str, object] | None = None,
        on_message: Callable[[dict[str, object]], None] | None = None,
    ) -> Outcome:
        """Send one request (`payload` travels inline when it is small, else as a memfd;
        `fds` go along) and collect the output until the interpreter answers. Past
        `timeout + grace` the whole sandbox is killed. When the tree's CPU time passes
        `cpu_time`, a pooled run is told to stop; a session has its own CPU timer, so it is
        killed only at `cpu_time + grace`. `start` adds to a pooled run's "run" message
        (what to collect); the messages that come before the answer (collected files, a
        session's file or listing) go to `on_message`."""
        self.requests += 1
        self.clean = False
        if self._spent is not None:
            self._spent.close()
            self._spent = None
        self._discard_output()
        self.meter.reset_peak()
        oom_before = self.meter.oom_kills() or 0
        cpu_start = self.meter.cpu()
        started = time.monotonic()
        hard_deadline = started + timeout + grace
        sent_on = self._send_request(message, payload, fds)
        if sent_on is not None:  # pooled: the zygote times the run from when it was sent
            self._send({"op": "run", "at": started, "timeout": timeout, **(start or {})})
            self._spent = sent_on  # closed later: now, it would wake the run for nothing
        answer, hard_killed, cpu_exceeded = None, False, False
        # Output is read as it comes only after a moment: a short run's few bytes wait in
        # the (enlarged) pipes, and we wake once, for the answer, instead of twice.
        poller, quiet_until = self._poller(output=False), started + _QUIET
        next_check = started + _TICK if cpu_time is not None and cpu_start is not None else None
        while True:
            now = time.monotonic()
            if now >= hard_deadline and not hard_killed:
                hard_killed = True
                self.kill()
            if quiet_until and now >= quiet_until:
                poller, quiet_until = self._poller(), 0.0
            if next_check is not None and now >= next_check and not hard_killed:
                next_check = now + _TICK
                spent = (self.meter.cpu() or 0.0) - cpu_start  # type: ignore[operator]
                if spent >= cpu_time and not cpu_exceeded:  # type: ignore[operator]
                    cpu_exceeded = True
                    if message.get("op") == "run":
                        self._send({"op": "kill"})
                if spent >= cpu_time + grace:  # type: ignore[operator]
                    hard_killed = True
                    self.kill()
            wakes = [hard_deadline if not hard_killed else now + 3600.0]
            wakes += [t for t in (quiet_until, next_check) if t]
            events = poller.poll(max(min(wakes) - now, 0.0) * 1000)
            finished, answer = self._handle(events, out, err, ("done",), on_message)
            if finished:
                break
        self._drain(out, err)
        oom_after = self.meter.oom_kills()
        cpu_end = self.meter.cpu()
        return Outcome(
            done=answer,
            wall=time.monotonic() - started,
            hard_killed=hard_killed,
            cpu_exceeded=cpu_exceeded,
            oom_kills=max((oom_after or 0) - oom_before, 0) if oom_after is not None else 0,
            peak=self.meter.peak(),
            cpu=cpu_end - cpu_start if cpu_start is not None and cpu_end is not None else None,
        )

    def death(self) -> RunReport:
        """How the sandbox ended, once the interpreter is gone (waits for the supervisor)."""
        self.kill()
        return self.run.report()

    def kill(self) -> None:
        """Kill the whole sandbox now; thread-safe, idempotent."""
        self.run.kill()

    def close(self) -> None:
        """Kill the sandbox, wait until its supervisor has cleaned up, close every fd."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.run.close()
        self.control.close()
        for sock in (self._next, self._spent):
            if sock is not None:
                sock.close()
        self.meter.close()

    # ------------------------------------------------------------------ internals

    def _poller(self, *, output: bool = True) -> select.poll:
        poller = select.poll()
        fds = (self.control.fileno(), self.run.stdout, self.run.stderr)
        for fd in fds if output else fds[:1]:
            poller.register(fd, select.POLLIN)
        return poller

    def _handle(
        self,
        events: list[tuple[int, int]],
        out: Sink | None,
        err: Sink | None,
        until: tuple[str, ...],
        on_message: Callable[[dict[str, object]], None] | None = None,
    ) -> tuple[bool, dict[str, object] | None]:
        """Read what the events say is there; (finished, the answer if one of `until` came)."""
        control = self.control.fileno()
        for fd, _ in events:
            if fd == control:
                message = self._receive()
                if message is None:
                    return True, None  # the interpreter (or its whole sandbox) is gone
                if message.get("op") in until:
                    return True, message
                if on_message is not None:
                    on_message(message)
            else:
                self._read_output(fd, out if fd == self.run.stdout else err)
        return False, None

    def _wait_message(
        self, deadline: float, out: Sink | None, err: Sink | None
    ) -> dict[str, object] | None:
        poller = self._poller()
        while (wait := deadline - time.monotonic()) > 0:
            finished, message = self._handle(poller.poll(wait * 1000), out, err, ("ready", "dirty"))
            if finished:
                return message
        return None

    def _receive(self) -> dict[str, object] | None:
        """One message, or None when the channel is closed or says nothing we understand
        (the interpreter is then treated as gone)."""
        try:
            data, fds, _, _ = socket.recv_fds(self.control, MESSAGE, 4)
        except OSError:
            return None
        try:
            message = json.loads(data) if data else None
        except ValueError:
            message = None
        if not isinstance(message, dict):
            message = None
        for fd in fds:  # the only one expected: a zygote's prepared run's socket, with "ready"
            ready = message is not None and message.get("op") == "ready"
            if self.pooled and ready and _is_socket(fd):
                if self._next is not None:
                    self._next.close()
                self._next = socket.socket(fileno=fd)
            else:
                os.close(fd)
        return message

    def _send_request(
        self, message: dict[str, object], payload: bytes, fds: Sequence[int]
    ) -> socket.socket | None:
        """To the prepared run's own socket (pool: returned, to be closed after the run), or
        to the interpreter (session). If it is gone, the wait for the answer sees that."""
        inline = len(payload) <= _INLINE
        data = json.dumps({**message, "inline": inline}).encode() + b"\n"
        attached = list(fds) if inline else [memfd(payload), *fds]
        target, self._next = self._next, None
        try:
            with contextlib.suppress(OSError):
                datagram, sock = data + payload if inline else data, target or self.control
                if attached:
                    socket.send_fds(sock, [datagram], attached)
                else:
                    sock.send(datagram)
        finally:
            if not inline:
                os.close(attached[0])
        return target

    def _send(self, message: dict[str, object]) -> None:
        with contextlib.suppress(OSError):
            self.control.send(json.dumps(message).encode())

    def _read_output(self, fd: int, sink: Sink | None) -> bool:
        """Read once what is there; False when nothing is there now (or ever will be)."""
        try:
            data = os.read(fd, _CHUNK)
        except OSError:  # BlockingIOError: nothing now
            return False
        if sink is not None and data:
            sink.add(data)
        return bool(data)

    def _drain(self, out: Sink | None, err: Sink | None) -> None:
        """What is left in the pipes: every process that could write is gone (pool), or it
        is what the call wrote before answering (session: bounded, a background thread may
        still be writing)."""
        for fd, sink in ((self.run.stdout, out), (self.run.stderr, err)):
            # A read takes one buffer of the pipe, however small (O_DIRECT writes packets):
            # at most one a page of its size, which a run may have changed.
            buffers = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) // 4096 + 1
            for _ in range(2 * buffers):
                if not self._read_output(fd, sink):
                    break

    def _discard_output(self) -> None:
        """Drop what was written between requests (nothing, in a pool)."""
        self._drain(None, None)


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def memfd(data: bytes) -> int:
    """`data` in a fresh memfd, rewound, to hand to the interpreter beside a request."""
    fd = os.memfd_create("stockade-request", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _failure(run: running.Running, mode: str, detail: str) -> Result:
    """The Result of a sandbox whose interpreter never became ready."""
    run.kill()
    report = run.report()
    if report.setup_error is None:
        what = f"the {mode} interpreter ended while starting"
        how = describe_end(report.exit_code, report.signal)
        cause = f"{what} ({how}){': ' + detail if detail else ''}"
        report = report._replace(setup_error=cause)
    empty = Sink(0)
    return running.report_result(report, empty, empty)


def decode_status(status: object) -> tuple[int | None, int | None]:
    """A wait status from inside (JSON, so checked first) -> (exit code, signal); nonsense ->
    (None, SIGKILL)."""
    if not isinstance(status, int) or isinstance(status, bool) or not 0 <= status < 1 << 16:
        return None, signal.SIGKILL
    return decode_wait_status(status)


def number(message: Mapping[str, object], key: str) -> float:
    value = message.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return 0.0

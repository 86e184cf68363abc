"""The supervisor of one run: per-run dir, cgroup, fork, wait, timeout killer, collect, cleanup.

It runs in a single-threaded process of its own (forked by the runner or by the spawn
server), so the fork below is safe. Its work ends with a `RunReport`; every resource it made
is released by one ExitStack, also when it is told to stop by SIGTERM (its parent died).
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import fcntl
import gc
import json
import os
import pickle
import resource
import select
import signal
import struct
import time
from collections.abc import Iterator
from typing import NamedTuple

from stockade.errors import SandboxError, SetupError, UnsupportedError
from stockade.kernel import namespaces, uids
from stockade.kernel.cgroups import control as cgroups
from stockade.kernel.cgroups.base import Cgroup, CgroupStats
from stockade.kernel.limits import Rlimits
from stockade.net import namespace as net
from stockade.result import decode_wait_status, describe_end
from stockade.spawn import child
from stockade.spawn.call import Stdio
from stockade.spawn.collect import ENDED_AT_A_LIMIT, Collected
from stockade.spawn.plan import RunPlan

RUN_DIR_PREFIX = "stockade-"
_CPU_POLL = 0.05  # seconds between checks of the tree's CPU time


class RunReport(NamedTuple):
    """What the supervisor saw; the runner turns it into a `Result`."""

    exit_code: int | None = None
    signal: int | None = None
    setup_error: str | None = None
    exec_error: str | None = None
    timed_out: bool = False
    oom_killed: bool = False
    wall_time: float = 0.0
    cpu_time: float = 0.0
    peak_memory: int = 0
    warnings: tuple[str, ...] = ()
    files: dict[str, bytes] = {}  # noqa: RUF012 (never changed: a report is replaced whole)
    unsupported: tuple[str, str] | None = None  # what the machine lacks, and the hint


class Started(NamedTuple):
    """Sent on the reply channel once the run's init is forked, before the `RunReport`: what a
    caller of a long-lived run (`Sandbox.start`, the pool) needs to account for it itself."""

    cgroup: Cgroup | None  # None: no cgroup (best_effort)
    warnings: tuple[str, ...] = ()


_FRAME = struct.Struct("!I")


def frame(message: RunReport | Started) -> bytes:
    """One message on the reply channel: its length, then its pickle."""
    data = pickle.dumps(message)
    return _FRAME.pack(len(data)) + data


def unframe(data: bytes) -> tuple[list[RunReport | Started], bytes]:
    """The whole messages at the start of `data`, and the bytes of an incomplete one."""
    messages, offset = [], 0
    while len(data) - offset >= _FRAME.size:
        (size,) = _FRAME.unpack_from(data, offset)
        if len(data) - offset - _FRAME.size < size:
            break
        start = offset + _FRAME.size
        messages.append(pickle.loads(data[start : start + size]))
        offset = start + size
    return messages, data[offset:]


class Stopped(Exception):
    """The supervisor was told to stop (SIGTERM): its parent is gone."""


def _stop(signum: int, frame: object) -> None:
    raise Stopped


def supervise(
    plan: RunPlan, stdio: Stdio | None, control: int | None = None, call: int | None = None
) -> RunReport:
    """Run the plan to the end and report. Closes the `stdio` fds it was given.

    `control` is the reply channel to the caller: `Started` is sent on it once the init is
    forked, and its end of file (the caller called `Running.kill`, or died) stops the run.
    Without `stdio` the run is prepared (prepared.py): set up, then its init waits for its
    call (command, files, stdio), which the caller sends on `call` straight to it; the run's
    time starts then."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # a caller's SIG_IGN would eat the status
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if stdio is not None:
            stack.callback(_close_all, stdio)
        try:
            # First, so it is released last: the uid is free again only once nothing of the
            # run is left (a SIGKILLed supervisor's lock goes with it, and its run too).
            plan, shared, subordinate = _take_ids(plan, stack)
            cgroup, weaker = _make_cgroup(plan)
            warnings = plan.warnings + shared + weaker
            if cgroup is None:
                plan = plan._replace(rlimits=plan.rlimits + _fallback_rlimits(plan))
            else:
                stack.callback(cgroup.remove)
            root = stack.enter_context(_run_dir())
            report_r, report_w = os.pipe2(os.O_CLOEXEC)
            stack.callback(os.close, report_r)
            report_w = _above_stdio(report_w)
            # The run's network namespace with its allowlist and relay (no allowlist: None,
            # and the init makes a namespace with only lo). Single-threaded: see net/namespace.py.
            network = stack.enter_context(net.isolate(plan.network, rootless=plan.rootless))
            # Host-side resources (cgroup, run dir) are made above, as the caller's own user.
            if plan.rootless:
                _enter_user_namespace(plan, subordinate)
                if network is not None:  # rootless: its namespace is made in the user one
                    network.make_namespace()
            namespaces.unshare_pid_for_children()
            # Born in its cgroup where the kernel can; else `join` names what it must join.
            init, join = cgroups.fork_into(cgroup)
            if init == 0:
                os.close(report_r)
                if control is not None:  # the caller's channel is ours: our death must close it
                    os.close(control)
                netns = network.netns if network else None
                child.run_init(plan, root, join, stdio, report_w, netns, call)
        except (SandboxError, OSError) as exc:
            # What the caller's up-front check could not see (a container's seccomp profile
            # refusing unshare) is still the machine's lack, raised as such in the caller.
            lacks = (exc.missing, exc.hint) if isinstance(exc, UnsupportedError) else None
            elapsed = time.monotonic() - started
            return RunReport(setup_error=_describe(exc), wall_time=elapsed, unsupported=lacks)
        os.close(report_w)
        stack.callback(_kill_and_reap, init, cgroup)
        reported = b""
        if stdio is not None:
            _close_all(stdio)
        else:
            assert control is not None and call is not None
            os.close(call)  # the init's now
            arrived, reported = _await_call(control, report_r, init)
            if arrived is None:
                return RunReport(setup_error="the prepared run was closed before its call")
            started = arrived
            # The init tells of its call once the workload has started, long after it pivoted
            # away from the run dir (or it failed, and is ending): no live namespace has a
            # mount on it, so it can go now, while the workload runs, rather than after.
            with contextlib.suppress(OSError):  # else it goes at the end, as always
                os.rmdir(root)
        if control is not None:
            os.write(control, frame(Started(cgroup, warnings)))
        watch = _Watch(init, report_r, cgroup, plan, started, control, reported)
        report = watch.run(warnings)
        if network is not None:  # the run is over: stop the relay, say which bounds it hit
            report = report._replace(warnings=report.warnings + network.finish())
        return report
    raise AssertionError("unreachable")


def _await_call(control: int, report_fd: int, init: int) -> tuple[float | None, bytes]:
    """Wait until the prepared init has its call: when it arrived (the init says so first
    on its report pipe), and what the init reported so far, for the watch. None when the
    caller closed the run instead. If the init ended first (a failed setup), the time is
    now, and the watch reports why."""
    poller = select.poll()
    poller.register(control, select.POLLIN)
    poller.register(report_fd, select.POLLIN)
    pidfd = os.pidfd_open(init)
    poller.register(pidfd, select.POLLIN)
    reported = b""
    try:
        while True:
            for fd, _ in poller.poll():
                if fd == control and not _read_or_eof(control):
                    return None, reported
                if fd == pidfd:
                    return time.monotonic(), reported
                if fd == report_fd:
                    chunk = os.read(report_fd, 65536)
                    reported += chunk
                    first, newline, _ = reported.partition(b"\n")
                    if newline or not chunk:  # its call, or why its setup failed
                        arrived = json.loads(first).get("at") if newline else None
                        return arrived or time.monotonic(), reported
    finally:
        os.close(pidfd)


def _above_stdio(fd: int) -> int:
    """`fd` moved to 4 or above: the init puts the stdio and the tool channel on 0 to 3, and
    must not clobber its report pipe doing so."""
    if fd >= 4:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 4)
    os.close(fd)
    return moved


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SandboxError):
        return str(exc)
    assert isinstance(exc, OSError)
    return str(SetupError("supervisor", exc.errno or 0, str(exc)))


_run_counter = iter(range(1 << 62))


def _make_cgroup(plan: RunPlan) -> tuple[Cgroup | None, tuple[str, ...]]:
    name = f"{os.getpid()}-{next(_run_counter)}"
    try:
        return cgroups.create(name, plan.cgroup_limits), ()
    except UnsupportedError as exc:
        if plan.cgroups_required:
            raise
        return None, _weaker_limits(plan, exc)


def _weaker_limits(plan: RunPlan, cause: UnsupportedError) -> tuple[str, ...]:
    """What `cgroups = "best_effort"` gives up, said plainly for Result.warnings."""
    limits = plan.cgroup_limits
    warnings = [f"no cgroup ({cause}); limits fall back to per-process rlimits"]
    if limits.memory is not None:
        warnings.append(
            "memory: RLIMIT_AS per process (address space, not the whole tree's "
            "memory; tmpfs files are not counted; no OOM report)"
        )
    if limits.pids is not None:
        warnings.append("pids: RLIMIT_NPROC, counted per user (in rootless mode, per run)")
    if plan.cpu_time is not None:
        warnings.append("cpu_time: RLIMIT_CPU per process, not for the whole tree")
    warnings.append("peak_memory and cpu_time in the Result come from the init's rusage")
    return tuple(warnings)


def _fallback_rlimits(plan: RunPlan) -> Rlimits:
    limits = plan.cgroup_limits
    extra = []
    if limits.memory is not None:
        extra.append((resource.RLIMIT_AS, limits.memory, limits.memory))
    if limits.pids is not None:
        extra.append((resource.RLIMIT_NPROC, limits.pids, limits.pids))
    return tuple(extra)


def _take_ids(
    plan: RunPlan, stack: contextlib.ExitStack
) -> tuple[RunPlan, tuple[str, ...], tuple[int, int] | None]:
    """The sandbox's uid and gid for its whole life (kernel/uids.py), in its plan: the
    policy's own, or a uid of its own held until the stack closes. Also what it shares with
    other sandboxes (a warning), and without root the host ids its ids map to (None: the
    caller's own)."""
    ids = plan.ids
    if plan.rootless:
        inner_uid = ids.uid or uids.NOBODY
        inner = plan.root._replace(uid=inner_uid, gid=ids.gid or inner_uid)
        held = uids.subordinate_lease()
        if held is None:
            return plan._replace(root=inner), (_SHARED_ROOTLESS,), None
        stack.callback(held[0].release)
        return plan._replace(root=inner), (), (held[0].id, held[1])
    if ids.uid is not None:
        own = plan.root._replace(uid=ids.uid, gid=ids.gid or ids.uid)
        if held := uids.share(ids.uid):  # no lease hands it to another sandbox meanwhile
            stack.callback(held.release)
        return plan._replace(root=own), _shared_fixed(own.uid, own.gid, held is None), None
    lease = uids.lease(ids.first, ids.last)
    stack.callback(lease.release)
    return plan._replace(root=plan.root._replace(uid=lease.id, gid=ids.gid or lease.id)), (), None


def _shared_fixed(uid: int, gid: int, leased: bool) -> tuple[str, ...]:
    """What a policy's own fixed uid shares, said in the run's warnings."""
    warnings = [
        f"process.uid is set ({uid}): every sandbox of this policy runs as it and shares the "
        f"kernel's per-user counts with the others ({uids.SHARED_COUNTS}); leave it out for a "
        "uid of each sandbox's own"
    ]
    host = uids.host_ids()
    if host.holds(uid) or host.holds(gid):
        warnings.append(
            f"process.uid {uid} or gid {gid} is a user's or group's of this host (or in a range "
            "of /etc/subuid, /etc/subgid): the sandbox shares those counts with that user's "
            "programs, and may use what their files allow"
        )
    if leased:
        warnings.append(f"uid {uid} is also a sandbox's own from a uid_range right now")
    return tuple(warnings)


_SHARED_ROOTLESS = (
    "without root and without subordinate ids (newuidmap and newgidmap, and a range of yours "
    "in /etc/subuid and /etc/subgid), every sandbox runs as your own uid and shares the "
    f"kernel's per-user counts with your other sandboxes and programs ({uids.SHARED_COUNTS}), "
    "and keeps your supplementary groups (the kernel lets only a gid map newgidmap wrote drop "
    "them): it may read what they may"
)


def _enter_user_namespace(plan: RunPlan, subordinate: tuple[int, int] | None) -> None:
    try:
        namespaces.enter_user_namespace(plan.root.uid, plan.root.gid, subordinate)
    except OSError as exc:
        raise UnsupportedError(
            f"unprivileged user namespaces ({exc.strerror}), which running without root needs",
            namespaces.user_namespace_hint(),
        ) from None


@contextlib.contextmanager
def _run_dir() -> Iterator[str]:
    """The empty host directory the child mounts its new root on. It stays empty on the
    host side (the mounts live in the child's namespace), so rmdir is all cleanup needs."""
    path = _make_run_dir()
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):  # a prepared run's went early
            os.rmdir(path)


def _make_run_dir() -> str:
    # tempfile.mkdtemp's way (a new name of random letters, mode 0700, never an existing
    # one) without importing tempfile, which brings shutil, random, bz2 and lzma: ~5 ms of
    # every `sandbox` command.
    while True:
        path = os.path.join(_temp_dir(), f"{RUN_DIR_PREFIX}{os.getpid()}-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def _temp_dir() -> str:
    return os.environ.get("TMPDIR") or "/tmp"


def _kill(init: int, cgroup: Cgroup | None) -> None:
    """Kill the run's init, and with it its pid namespace; then whatever is in the cgroup."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(init, signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill()


def _kill_and_reap(init: int, cgroup: Cgroup | None) -> None:
    """End the run's init unless it has ended: once reaped, its pid may be another's, and
    an init that has exited took its pid namespace with it (cgroup.remove sweeps what is
    left, if anything)."""
    try:
        if os.waitpid(init, os.WNOHANG)[0]:
            return
    except ChildProcessError:
        return  # the watch reaped it
    _kill(init, cgroup)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(init, 0)


class _Watch:
    """Wait for the init to exit, reading the report pipe; kill on wall or CPU time.

    The init's messages are JSON lines, taken as they come: collected files (collect.py) go
    straight into their `Collected`, whose cap bounds them, and only the partial last line
    stays as bytes."""

    def __init__(
        self,
        init: int,
        report_fd: int,
        cgroup: Cgroup | None,
        plan: RunPlan,
        started: float,
        control: int | None = None,
        reported: bytes = b"",
    ) -> None:
        self.init, self.report_fd, self.cgroup, self.plan = init, report_fd, cgroup, plan
        self.started = started
        self.deadline = started + plan.timeout
        self.buffer = bytearray()  # the last line's bytes until its newline comes
        self.messages: list[dict] = []
        # A prepared run's plan does not say what its call collects: the init's messages do.
        self.collected = Collected(plan.collect_size)
        self._take(reported)  # what the init reported before the watch began
        self.timed_out = False
        self.control = control  # the reply channel: its end of file means "stop the run"
        self.stopped = False

    def run(self, warnings: tuple[str, ...]) -> RunReport:
        pidfd = os.pidfd_open(self.init)
        try:
            self._wait(pidfd)
        finally:
            os.close(pidfd)
        _, status, usage = os.wait4(self.init, 0)
        wall = time.monotonic() - self.started
        self._drain()
        stats = self.cgroup.stats() if self.cgroup else None
        return self._report(status, usage, stats, wall, warnings)

    def _wait(self, pidfd: int) -> None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(self.report_fd, select.POLLIN)
        if self.control is not None:
            poller.register(self.control, select.POLLIN)
        while True:
            now = time.monotonic()
            if now >= self.deadline or self._cpu_exhausted():
                self.timed_out = True
                _kill(self.init, self.cgroup)
                self.deadline = float("inf")
            wait = min(self.deadline - now, _CPU_POLL if self.plan.cpu_time else 3600.0)
            for fd, _ in poller.poll(max(wait, 0.0) * 1000):
                if fd == pidfd:
                    return
                if fd == self.control:
                    if not _read_or_eof(fd):  # the caller stopped the run, or is gone
                        self.stopped = True
                        _kill(self.init, self.cgroup)
                        poller.unregister(fd)
                    continue
                if not self._read():
                    poller.unregister(self.report_fd)

    def _cpu_exhausted(self) -> bool:
        limit = self.plan.cpu_time
        return bool(limit and self.cgroup and self.cgroup.cpu_time() >= limit)

    def _read(self) -> bool:
        chunk = os.read(self.report_fd, 65536)
        self._take(chunk)
        return bool(chunk)

    def _take(self, chunk: bytes) -> None:
        self.buffer += chunk
        *lines, rest = self.buffer.split(b"\n")
        self.buffer = bytearray(rest)
        for line in lines:
            if line.strip():
                message = json.loads(line)
                if message["kind"] in ("file", "end", "left_out"):
                    self.collected.take(message["kind"], message["name"], message["value"])
                else:
                    self.messages.append(message)

    def _drain(self) -> None:
        os.set_blocking(self.report_fd, False)
        with contextlib.suppress(BlockingIOError):
            while self._read():
                pass

    def _report(
        self,
        status: int,
        usage: object,
        stats: CgroupStats | None,
        wall: float,
        warnings: tuple[str, ...],
    ) -> RunReport:
        by_kind = {message["kind"]: message for message in self.messages}
        setup_error = exec_error = None
        if "setup" in by_kind:
            failed = by_kind["setup"]
            setup_error = str(SetupError(failed["step"], failed["errno"], failed["detail"]))
        if "exec" in by_kind:
            failed = by_kind["exec"]
            exec_error = f"cannot execute {failed['command']!r}: {os.strerror(failed['errno'])}"
        oom_killed = bool(stats and stats.oom_killed)
        workload_status = by_kind.get("exit", {}).get("status")
        if workload_status is None:
            # The init itself ended first: killed by us on time, by the OOM killer, after a
            # failed exec (with 126/127), or broken.
            if not (self.timed_out or oom_killed or setup_error or exec_error or self.stopped):
                how = describe_end(*decode_wait_status(status))
                setup_error = f"the run's init ended before the workload ({how})"
            workload_status = status
        exit_code, signum = decode_wait_status(workload_status)
        if self.timed_out or oom_killed:
            self.collected.abandon(ENDED_AT_A_LIMIT)
        files = self.collected.files()  # before its warnings: it may leave out more
        return RunReport(
            exit_code=exit_code,
            signal=signum,
            setup_error=setup_error,
            exec_error=exec_error,
            timed_out=self.timed_out,
            oom_killed=oom_killed,
            wall_time=wall,
            cpu_time=stats.cpu_time if stats else usage.ru_utime + usage.ru_stime,  # type: ignore[attr-defined]
            peak_memory=stats.peak_memory if stats else usage.ru_maxrss * 1024,  # type: ignore[attr-defined]
            warnings=warnings + self.collected.warnings(),
            files=files,
        )


def _read_or_eof(fd: int) -> bool:
    """Read and drop what is there; False at end of file (or a reset: the peer is gone)."""
    try:
        return bool(os.read(fd, 4096))
    except OSError:
        return False


def cleanup_stale() -> None:
    """Remove what supervisors killed by SIGKILL left behind: empty run dirs, cgroups.
    Best effort: a full or missing temp dir is the run's own error to report, not ours."""
    try:
        base = _temp_dir()
        names = os.listdir(base)
    except OSError:
        names = []
    for name in names:
        if name.startswith(RUN_DIR_PREFIX) and not _alive(name[len(RUN_DIR_PREFIX) :]):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(base, name))
    cgroups.cleanup_stale()


def _alive(tag: str) -> bool:
    pid = tag.split("-", 1)[0]
    return not pid.isdigit() or os.path.exists(f"/proc/{pid}")


def supervise_and_reply(
    plan: RunPlan, stdio: Stdio | None, reply: int, parent: int, call: int | None = None
) -> None:
    """The body of a supervisor process: run, send the pickled report on `reply`, exit.

    It dies with its parent (the caller or the spawn server): PR_SET_PDEATHSIG delivers
    SIGTERM, which `supervise` turns into a clean stop that kills the run and cleans up.
    """
    # A collection would touch every object inherited from the caller and copy its pages.
    gc.disable()
    try:
        from stockade.kernel import syscalls as sc

        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above
            return
        # A fork of the caller holds copies of all its fds; one of them may be the write end
        # of the run's stdin, which would then never see EOF.
        sc.close_fds_except((0, 1, 2, *(stdio or ()), reply, call or reply))
        report = supervise(plan, stdio, control=reply, call=call)
        with os.fdopen(reply, "wb") as channel:
            channel.write(frame(report))
        # The caller wakes on this CPU (the kernel expects a writer to a socket to sleep
        # next), and would wait there for our exit's teardown: let it run first (~1.5 ms).
        os.sched_yield()
    finally:
        os._exit(0)

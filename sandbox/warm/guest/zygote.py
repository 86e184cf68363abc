"""The program inside a pooled sandbox or a session: a warm Python interpreter.

It is the workload of an ordinary sandbox run (namespaces, mounts, the unprivileged uid, no
capabilities, seccomp and the cgroup are all in place before it starts), started as
`python3 -c <this file's source> pool|session`. Standard library only: the `stockade` package
is not visible inside. `warm/host.py` is its other end.

File descriptors: 0 is a SOCK_SEQPACKET control socket to the host (one JSON message per
datagram), 1 and 2 are the sandbox's stdout and stderr pipes, which the host drains. A request
is a JSON header line and its payload, inline or in a memfd that comes with it.

pool: fork the next run's child ahead of time and hand the host a socket to it with "ready".
The host says "run" to us and sends the request (code, files, environment, stdin) straight to
the child, which applies the run's limits and runs the code with exec() in a fresh `__main__`,
its output going straight to the host's pipes. When it says it has ended (or dies, or the
deadline passes), kill every process of the run, say "done", wipe /workspace, /tmp and
/dev/shm, remove SysV IPC objects, and fork the next child. This process never reads a run's
code, input or output: every later run is forked from it, so whatever it held would be
readable there. It is not dumpable, so a run cannot write into its memory.

session: run each call's code with exec() in one persistent `__main__` of this process itself,
so state persists; the call's deadline interrupts it with SIGINT (KeyboardInterrupt).
"""

from __future__ import annotations

import array
import binascii
import ctypes
import errno
import fcntl
import gc
import io
import json
import marshal
import os
import re
import resource
import select
import signal
import socket
import stat
import struct
import sys
import time
import types
from collections.abc import Iterator

# Copies (the package is not visible here) of the kernel's, the standard library's and the
# host's numbers: tests/unit/test_zygote_constants.py holds them equal to their originals.
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 4, 36, 22, 2
IPC_RMID = 0
F_GETPIPE_SZ, F_SETSIG = 1032, 10
SCRATCH = ("/workspace", "/tmp", "/dev/shm")  # the writable places, wiped after each run
MESSAGE = 1 << 16
IDLE_CPU_EXIT = 86  # a session's threads used up its CPU time between calls (session.py)
TOOLS_SPEC, TOOLS_FD = "STOCKADE_TOOLS", "STOCKADE_TOOLS_FD"  # callbacks/guest's variables
_LATE = 10.0  # seconds "run" may come after the request it goes with
# The zygote's own dispositions: a run shares its uid and may signal it; SIGKILL and SIGSTOP
# cannot be ignored, and the pool replaces a zygote that dies or stops answering.
IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGALRM, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
           signal.SIGVTALRM, signal.SIGPROF, signal.SIGXCPU, signal.SIGIO)  # fmt: skip

OWN_FILENAME = sys._getframe().f_code.co_filename  # "<string>" under -c: our frames
_libc = ctypes.CDLL(None, use_errno=True)
# ioprio_get(2) and sched_getattr(2), which `os` lacks: a run can set both on us (getppid())
_MACHINE = os.uname().machine
SYS_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}[_MACHINE]
SYS_SCHED_GETATTR = {"x86_64": 315, "aarch64": 275}[_MACHINE]
IOPRIO_WHO_PROCESS = 1
SCHED_ATTR_SIZE = 56  # struct sched_attr with the utilisation clamps (SCHED_ATTR_SIZE_VER1)


def _prctl(option: int, arg: int | ctypes.c_void_p) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


class Channel:
    """The control socket: one JSON message per datagram, fds alongside."""

    def __init__(self) -> None:
        self.sock = socket.socket(fileno=os.dup(0))  # keep fd 0 for the runs' stdin
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.close(null)

    def receive(self) -> tuple[dict | None, list[int]]:
        data, fds, _, _ = socket.recv_fds(self.sock, MESSAGE, 4)
        if not data:
            return None, fds
        return json.loads(data), fds

    def send(self, **message: object) -> None:
        self.sock.send(json.dumps(message).encode())

    def send_fd(self, fd: int, **message: object) -> None:
        socket.send_fds(self.sock, [json.dumps(message).encode()], [fd])


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _load_filter(program: bytes) -> None:
    """Stack one more seccomp program (stacking only narrows what is allowed)."""

    class SockFprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))

    prog = SockFprog(len(program) // 8, program)
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"seccomp: {os.strerror(errno)}")


_TOOLS: list = []  # the host-tools module's code (stockade_tools), compiled once


def _setup(channel: Channel) -> dict:
    init, fds = channel.receive()
    if init is None:
        sys.exit(0)
    for fd in fds:
        _load_filter(_read_all(fd))
        os.close(fd)
    if init.get("tools"):
        _TOOLS.append(compile(init["tools"], "<stockade_tools>", "exec"))
    for name in init.get("preload", ()):
        __import__(name)
    # Nothing of ours on the runs' stdout and stderr; the runs get the pristine streams.
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    return init


# ------------------------------------------------------------------------------- the pool


def pool(channel: Channel) -> None:
    _prctl(PR_SET_DUMPABLE, 0)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a run come to us to be reaped and counted
    for number in IGNORED:
        signal.signal(number, signal.SIG_IGN)
    init = _setup(channel)
    early = bool(init.get("early"))  # the host measures CPU time and memory in the cgroup
    mode = os.stat("/workspace").st_mode & 0o7777
    _warm_up()
    gc.collect()
    gc.freeze()  # the children share these pages instead of copying them on the first gc
    settings, outputs = _settings(), _output_flags()
    while True:
        prepared = _Prepared.fork(channel)
        started = prepared.wait_for_start(channel)
        if started is not None:
            _serve(channel, prepared, started, early)
        try:
            _clean(mode)
            _restore_output_flags(outputs)
            if _settings() != settings:
                raise RuntimeError("a run changed the zygote's limits or scheduling")
        except Exception as exc:  # anything we cannot make clean retires this sandbox
            channel.send(op="dirty", why=f"{type(exc).__name__}: {exc}")
            return


_RLIMITS = tuple(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))


def _settings() -> tuple:
    """What a run, of our uid, can change in us from outside (prlimit, setpriority,
    sched_setaffinity, sched_setscheduler, sched_setattr with its utilisation clamps and
    flags, ioprio_set: being not dumpable stops none of them), or in the output pipes every
    later run shares (their size). Each is inherited by the runs we fork, so a change would
    reach every later tenant (and carry bits to it): we retire instead. Lowered hard limits
    could not be raised back anyway."""
    return (
        [resource.getrlimit(number) for number in _RLIMITS],
        [fcntl.fcntl(fd, F_GETPIPE_SZ) for fd in (1, 2)],  # the pipes themselves are shared
        os.getpriority(os.PRIO_PROCESS, 0),
        os.sched_getaffinity(0),
        os.sched_getscheduler(0),
        os.sched_getparam(0).sched_priority,
        _sched_attr(),
        _io_priority(),
    )


def _sched_attr() -> bytes:
    """All of sched_getattr(2): policy, flags (reset-on-fork), nice, priority, the deadline
    parameters and the utilisation clamps."""
    attr = ctypes.create_string_buffer(SCHED_ATTR_SIZE)
    if _libc.syscall(SYS_SCHED_GETATTR, 0, attr, SCHED_ATTR_SIZE, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"sched_getattr: {os.strerror(error)}")
    return attr.raw


def _io_priority() -> int:
    value = _libc.syscall(SYS_IOPRIO_GET, IOPRIO_WHO_PROCESS, 0)
    if value < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"ioprio_get: {os.strerror(error)}")
    return int(value)


_UNLOCK_ALL = struct.pack("hhqqi4x", fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0)  # struct flock


def _output_flags() -> list[int]:
    return [fcntl.fcntl(fd, fcntl.F_GETFL) for fd in (1, 2)]


def _restore_output_flags(flags: list[int]) -> None:
    """The runs write into our own open stdout and stderr (pipes cannot be opened anew by
    their uid): undo what one set on them (O_NONBLOCK, O_DIRECT's packets, O_ASYNC and its
    owner, a flock or an open file description's byte-range lock, which belong to the open
    file and so outlive the run), which would otherwise hold for every later run."""
    for fd, original in zip((1, 2), flags, strict=True):
        fcntl.fcntl(fd, fcntl.F_SETFL, original)
        fcntl.fcntl(fd, fcntl.F_SETOWN, 0)
        fcntl.fcntl(fd, F_SETSIG, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _UNLOCK_ALL)


def _warm_up() -> None:
    """Do once here what every run would otherwise do first (the compiler's lazy set-up),
    so that the children inherit it instead of paying for it."""
    exec(compile("for _ in range(2):\n    pass\n", "<warm-up>", "exec"), {})


def _rehearse() -> None:
    """In a prepared child: what a run does first, done on nothing, so that its
    copy-on-write faults are taken now rather than in the run's time."""
    _warm_up()
    _BUFFER[:] = bytes(len(_BUFFER))  # our own copy of its pages, now
    print(1, file=io.StringIO())
    header = {"op": "run", "timeout": 1.0, "cpu": 1, "stdin": False, "inline": True}
    line = json.dumps(header).encode() + b"\n" + marshal.dumps({"env": dict(os.environ)})
    json.loads(bytes(memoryview(line)).partition(b"\n")[0])
    job = marshal.loads(line.partition(b"\n")[2])
    array.array("i").frombytes(bytes(8))
    _ = job["env"] != dict(os.environ)
    module = types.ModuleType("__main__")
    module.__file__ = "/workspace/main.py"
    code = compile("import sys\nx = [str(i) for i in range(3)]\nprint(*x, file=f)\n", "w", "exec")
    exec(code, {**module.__dict__, "f": io.StringIO()})


class _Prepared:
    """The next run's process, forked ahead of its request and set up as far as that does
    not depend on the request. The host sends the request straight to it, on a socket that
    comes with our "ready"; it tells us on a socket of its own how the run ended (before it
    exits: an exit is slow to watch for)."""

    def __init__(self, pid: int, reports: socket.socket) -> None:
        self.pid, self.reports = pid, reports

    @classmethod
    def fork(cls, channel: Channel) -> _Prepared:
        host_end, requests = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        reports, child_reports = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            for ours in (host_end, reports, channel.sock):
                ours.close()
            _child(requests, child_reports)
        requests.close()
        child_reports.close()
        try:
            channel.send_fd(host_end.fileno(), op="ready")
        finally:
            host_end.close()
        return cls(pid, reports)

    def wait_for_start(self, channel: Channel) -> dict | None:
        """The host's "run" (sent right after the request to the child: when, and its
        timeout); None when the child ended without a request. Exits when the host is gone."""
        poller = select.poll()
        poller.register(self.reports, select.POLLIN)
        poller.register(channel.sock, select.POLLIN)
        ended = False  # the child spoke (or ended) first: "run" is on its way, or never comes
        while True:
            events = dict(poller.poll(_LATE * 1000 if ended else None))
            if channel.sock.fileno() in events:
                message, extra = channel.receive()
                for other in extra:
                    os.close(other)
                if message is None:
                    os._exit(0)  # the host is gone; the init ends the rest with us
                if message.get("op") == "run":
                    return message
                continue  # a late "kill" for a run that is over
            if not events or not _peek(self.reports):  # no request came: the host dropped it
                self.reports.close()
                return None
            ended = True  # it has already run (the host says "run" after the request)
            poller.unregister(self.reports)


def _peek(sock: socket.socket) -> bool:
    """Is there a message (not the end) waiting on `sock`?"""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


def _serve(channel: Channel, prepared: _Prepared, started: dict, early: bool) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = float(started["at"])
    timed_out = stopped = False
    reported: int | None = None
    pidfd = os.pidfd_open(prepared.pid)
    try:
        poller = select.poll()
        for fd in (pidfd, prepared.reports.fileno(), channel.sock.fileno()):
            poller.register(fd, select.POLLIN)
        deadline = began + float(started["timeout"])
        while reported is None:
            wait = deadline - time.monotonic()
            if wait <= 0:
                timed_out = True
                _kill_tree()
                deadline = float("inf")
                continue
            events = dict(poller.poll(min(wait, 3600.0) * 1000))
            if prepared.reports.fileno() in events:
                code = _report(prepared.reports, "exit")
                if isinstance(code, int) and 0 <= code <= 255:
                    reported = code
                else:  # it closed the socket, or said nonsense: watch it end
                    poller.unregister(prepared.reports)
            if pidfd in events and reported is None:
                break
            if channel.sock.fileno() in events:
                message, extra = channel.receive()
                for other in extra:
                    os.close(other)
                if message is None:  # the host is gone: end the run and go
                    _kill_tree()
                    os._exit(0)
                if message.get("op") == "kill":  # the host's CPU-time limit ran out
                    stopped = True
                    _kill_tree()
    finally:
        os.close(pidfd)
        prepared.reports.close()
    result = {"timed_out": timed_out, "stopped": stopped}
    pattern = started.get("collect")
    cap = int(started.get("collect_size") or 0)
    if reported is not None and early:
        # Every process of the run is killed by this one sweep, so no more output comes; the
        # host measured the rest. Their exits (slow) and reaping overlap with its work.
        _kill_tree()
        wall = time.monotonic() - began
        if pattern is not None and not (timed_out or stopped):  # none from a run ended early
            _kill_all()  # files are read once nothing of the run can change them
            _collect(channel, pattern, cap)
        channel.send(op="done", status=reported << 8, wall=wall, **result)
        _kill_all()
        return
    _, status, usage = os.wait4(prepared.pid, 0)
    _kill_all()  # everything the run left running, before we say it is over
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - began
    if pattern is not None and not (timed_out or stopped):  # none from a run ended early
        _collect(channel, pattern, cap)
    channel.send(
        op="done",
        status=status if reported is None else reported << 8,
        wall=wall,
        cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        maxrss=usage.ru_maxrss * 1024,
        **result,
    )


def _collect(channel: Channel, pattern: str, cap: int) -> None:
    """The files the run left, to the host, from a child of ours: this process never reads
    what a run made (every later run is forked from it). Nothing of the run is left now."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for kind, name, value in gather(pattern, cap):
                channel.send(op=kind, name=name, value=value)
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


# The collector, a copy of stockade.spawn.collect's (tests/unit/test_zygote_constants.py holds
# them equal): what comes out of /workspace, never following a link or opening a special file.
CHUNK = 16 << 10
WORKSPACE = "/workspace"


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


def _size(name: str) -> int:
    return len(name.encode(errors="surrogateescape"))


def _report(sock: socket.socket, key: str) -> object:
    """The value of `key` in the child's next message; None for anything else."""
    try:
        data = sock.recv(256)
        message = json.loads(data) if data else None
    except (OSError, ValueError):
        return None
    if not isinstance(message, dict) or key not in message:
        return None
    return message[key]


def _kill_tree() -> None:
    with _suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)


def _kill_all() -> None:
    """SIGKILL every process of the run (kill(-1) spares only us and the init), and reap
    until none is left: forks racing with it, setsid, stopped processes included."""
    deadline = time.monotonic() + 10
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:  # a dying one's children are still being handed to us
            time.sleep(0.0005)
        if time.monotonic() > deadline:
            raise RuntimeError("processes of the last run could not be killed")


def _clean(workspace_mode: int) -> None:
    _kill_all()
    for path in SCRATCH:
        _wipe(path, workspace_mode if path == "/workspace" else None)
    _remove_sysv_ipc()
    os.chdir("/workspace")


def _wipe(top: str, mode: int | None) -> None:
    """Remove everything under `top` without following a link; the run is over, so nothing
    moves meanwhile. Walks by chdir with a stack of names: no depth or path-length limit."""
    if mode is not None:  # ours: the run may have changed its mode or extended attributes
        os.chmod(top, mode)
        for name in os.listxattr(top):
            os.removexattr(top, name)
    os.chdir(top)
    # Each directory is listed once (its subdirectories kept to enter in turn): listing it
    # again after each one would make 16,000 of them a quadratic, unaccounted minute of CPU.
    stack: list[tuple[str, list[str]]] = []
    left = _unlink_files()
    while True:
        if left:
            name = left.pop()
            os.chmod(name, 0o700)  # the run may have made it unreadable; it is ours
            os.chdir(name)
            stack.append((name, left))
            left = _unlink_files()
            continue
        if not stack:
            return
        name, left = stack.pop()
        os.chdir("..")
        os.rmdir(name)


def _unlink_files() -> list[str]:
    """Remove what is not a directory here; return the subdirectories."""
    with os.scandir(".") as entries:
        listed = list(entries)
    for entry in listed:
        if not entry.is_dir(follow_symlinks=False):
            os.unlink(entry.name)
    return [entry.name for entry in listed if entry.is_dir(follow_symlinks=False)]


def _remove_sysv_ipc() -> None:
    removers = {
        "shm": lambda ident: _libc.shmctl(ident, IPC_RMID, None),
        "sem": lambda ident: _libc.semctl(ident, 0, IPC_RMID),
        "msg": lambda ident: _libc.msgctl(ident, IPC_RMID, None),
    }
    for kind, remove in removers.items():
        with open(f"/proc/sysvipc/{kind}") as table:
            rows = table.read().splitlines()[1:]
        for row in rows:
            if remove(int(row.split()[1])) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"removing SysV {kind} {row.split()[1]}")


class _suppress:
    def __init__(self, *kinds: type[BaseException]) -> None:
        self.kinds = kinds

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, tb: object) -> bool:
        return isinstance(value, self.kinds)


def _child(requests: socket.socket, reports: socket.socket) -> None:
    """One pooled run, forked from the zygote ahead of its request. Never returns."""
    code = 125
    try:
        os.setsid()
        _restore_signals()
        sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__
        keep = sorted((requests.fileno(), reports.fileno()))
        os.closerange(3, keep[0])  # nothing of the zygote's
        os.closerange(keep[0] + 1, keep[1])
        os.closerange(keep[1] + 1, 1 << 16)
        _prctl(PR_SET_DUMPABLE, 1)  # an ordinary workload now; it holds nothing of ours
        _own_stdin()
        with open("/proc/self/oom_score_adj", "w") as adj:  # the run dies first, not us
            adj.write("1000")
        os.chdir("/workspace")
        sys.argv = ["main.py"]
        sys.path[0] = "/workspace"
        with _suppress(Exception):  # only a head start: the run does all this for real
            _rehearse()
        request, payload, fds = _receive_request(requests)
        requests.close()
        if request is None:  # the host dropped this sandbox
            os._exit(0)
        job = marshal.loads(payload)
        tools = fds.pop() if request.get("tools") else None  # the last fd, after stdin's
        if request.get("stdin"):
            os.dup2(fds[-1], 0)
        for fd in fds:
            os.close(fd)
        if request.get("cpu"):
            seconds = int(request["cpu"])
            resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
        if job["env"] != dict(os.environ):
            os.environ.clear()
            os.environ.update(job["env"])
        if tools is not None:
            os.environ[TOOLS_FD] = str(tools)
        _write_files(job["files"])
        _reseed()
        code = _main(job["code"], "/workspace/main.py")
        with _suppress(OSError):
            reports.send(json.dumps({"exit": code}).encode())
    finally:
        os._exit(code)


_BUFFER = bytearray(MESSAGE)  # requests land here: its pages are faulted in before a run
_FDS = array.array("i", [0] * 4)


def _receive_request(sock: socket.socket) -> tuple[dict | None, bytes, list[int]]:
    """A request: a JSON header line, then its payload inline or in the first fd."""
    size, ancillary, _, _ = sock.recvmsg_into([_BUFFER], socket.CMSG_SPACE(_FDS.itemsize * 4))
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(data[: len(data) - len(data) % received.itemsize])
            fds.extend(received)
    if not size:
        return None, b"", fds
    header, _, payload = bytes(memoryview(_BUFFER)[:size]).partition(b"\n")
    request = json.loads(header)
    if not request.get("inline"):
        payload = _read_all(fds[0])
        os.close(fds.pop(0))
    return request, payload, fds


def _own_stdin() -> None:
    """A /dev/null of this run's own: a flock on the zygote's would outlast the run."""
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _restore_signals() -> None:
    for number in IGNORED:
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _write_files(files: dict[str, bytes], *, replace: bool = False) -> None:
    """Into /workspace, whatever the current directory (a session's code may change it);
    `replace`: a session's /workspace keeps earlier calls' files, a pooled run's starts empty."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if replace else os.O_EXCL)
    for name, content in files.items():
        path = os.path.join("/workspace", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, flags, 0o644)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def _install_tools(namespace: dict) -> None:
    """When the host gave this run tools (its variables say so): the module
    `stockade_tools`, made from the host's source, and its functions in `namespace`."""
    if not _TOOLS or TOOLS_SPEC not in os.environ or TOOLS_FD not in os.environ:
        return  # (a run's own `env` may name the variables: without the fd, nothing)
    module = types.ModuleType("stockade_tools")
    sys.modules["stockade_tools"] = module
    exec(_TOOLS[0], module.__dict__)
    namespace.update(module._connect())


def _reseed() -> None:
    # `random` reseeds itself after fork; numpy's legacy global generator does not.
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _main(source: str, filename: str) -> int:
    """Run `source` as `python3 main.py` would: a fresh __main__, the exit code as CPython
    makes it, non-daemon threads and atexit handlers at the end, streams flushed."""
    module = types.ModuleType("__main__")
    module.__file__ = filename
    module.__builtins__ = __builtins__  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    code = _execute(lambda: _install_tools(module.__dict__))
    if code == 0:
        code = _execute(lambda: exec(compile(source, filename, "exec"), module.__dict__))
    threading = sys.modules.get("threading")
    if threading is not None:
        code = _execute(threading._shutdown) or code  # type: ignore[attr-defined]
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with _suppress(Exception):
            stream.flush()
    return code


def _execute(body: object) -> int:
    try:
        body()  # type: ignore[operator]
    except SystemExit as exc:
        return _exit_code(exc)
    except KeyboardInterrupt as exc:
        _show(exc)
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # CPython dies of the signal
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException as exc:
        _show(exc)
        return 1
    return 0


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _show(exc: BaseException) -> None:
    """The traceback as Python shows it for a script: without our own frames."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename != OWN_FILENAME:
            frames.append(tb)
        tb = tb.tb_next
    # all frames may be ours (a SyntaxError, a file that cannot be written): no pairs then
    for frame, following in zip(frames, [*frames[1:], None], strict=False):
        frame.tb_next = following
    tb = frames[0] if frames else None
    sys.excepthook(type(exc), exc.with_traceback(tb), tb)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with _suppress(Exception):
            stream.flush()


# ------------------------------------------------------------------------------- sessions


class _Interrupter:
    """SIGINT to the main thread when a clock passes a deadline: POSIX timers aimed at this
    thread (so a blocking call is interrupted too), one on the wall clock and one on the
    process's CPU clock. Without timer_create, an ITIMER_REAL that raises the same way."""

    SIGEV_THREAD_ID = 4
    CLOCKS = (1, 2)  # CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID

    def __init__(self) -> None:
        self.fired = False
        self.timers: list[ctypes.c_void_p] = []

        class SigEvent(ctypes.Structure):
            _fields_ = (
                ("value", ctypes.c_void_p),
                ("signo", ctypes.c_int),
                ("notify", ctypes.c_int),
                ("tid", ctypes.c_int),
                ("pad", ctypes.c_int * 11),
            )

        event = SigEvent(None, signal.SIGINT, self.SIGEV_THREAD_ID, _gettid())
        for clock in self.CLOCKS:
            timer = ctypes.c_void_p()
            if _libc.timer_create(clock, ctypes.byref(event), ctypes.byref(timer)) != 0:
                self.timers = []
                break
            self.timers.append(timer)

    def arm(self, wall: float, cpu: float | None) -> None:
        """Set both timers (replacing what the last call left), then take SIGINT."""
        if self.timers:
            for timer, seconds in zip(self.timers, (wall, cpu), strict=True):
                self._set(timer, max(seconds, 1e-6) if seconds is not None else 0.0)
        else:
            signal.signal(signal.SIGALRM, self._interrupt)
            signal.setitimer(signal.ITIMER_REAL, wall)
        self.fired = False
        signal.signal(signal.SIGINT, self._interrupt)

    def disarm(self) -> None:
        """Ignore SIGINT until the next call: a timer still running fires into nothing."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if not self.timers:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def idle(self, cpu: float | None) -> None:
        """Between calls: past `cpu` more seconds of this process's CPU time (threads a call
        left running: the main thread only waits), end the session."""
        if self.timers and cpu is not None:
            for timer, seconds in zip(self.timers, (0.0, cpu), strict=True):
                self._set(timer, seconds)  # first: the call's own timers must not reach it
            signal.signal(signal.SIGINT, lambda signum, frame: os._exit(IDLE_CPU_EXIT))

    def _interrupt(self, signum: int, frame: object) -> None:
        # Once: the other clock may run out too, and a second KeyboardInterrupt would land
        # in the handling of the first, outside the call.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.fired = True
        raise KeyboardInterrupt

    @staticmethod
    def _set(timer: ctypes.c_void_p, seconds: float) -> None:
        """Relative: after `seconds` more of the timer's clock (0 disarms)."""
        whole = int(seconds)
        spec = (ctypes.c_long * 4)(0, 0, whole, int((seconds - whole) * 1e9))
        _libc.timer_settime(timer, 0, ctypes.byref(spec), None)


def _gettid() -> int:
    import threading

    return threading.get_native_id()


def session(channel: Channel) -> None:
    init = _setup(channel)
    measured = bool(init.get("early"))  # the host measures CPU time and memory
    # In a workspace, other commands share the sandbox: a call's processes are left to run
    # (the keeper ends them with the session), since ending "every process" would end theirs.
    end_processes = (lambda: None) if init.get("shared") else _kill_all
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import ast
    import linecache

    module = types.ModuleType("__main__")
    module.__builtins__ = __builtins__  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    _install_tools(module.__dict__)
    sys.argv = [""]
    sys.path[0] = "/workspace"
    os.chdir("/workspace")
    interrupter = _Interrupter()
    channel.send(op="ready", soft_cpu=bool(interrupter.timers))
    count = 0
    waiting = select.poll()
    waiting.register(channel.sock, select.POLLIN)
    while True:
        while not waiting.poll(1000):  # between calls, a thread a call left may fork: no
            end_processes()  # process of it lives longer than this
        request, payload, fds = _receive_request(channel.sock)
        for fd in fds:
            os.close(fd)
        if request is None:
            return
        if request.get("op") in ("read", "write", "list"):
            _file_op(channel, request, payload)
            continue
        job = marshal.loads(payload)
        source = job["code"]
        count += 1
        filename = f"<cell-{count}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        before = None if measured else _usage()
        started = time.monotonic()

        def body(
            source: str = source, filename: str = filename, files: dict = job["files"]
        ) -> None:
            _write_files(files, replace=True)  # a failure is the call's, with its traceback
            tree = ast.parse(source, filename, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):  # shown, as a notebook does
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, filename, "exec"), module.__dict__)
            if last is not None:
                sys.displayhook(eval(compile(last, filename, "eval"), module.__dict__))

        cpu = request.get("cpu")
        code, interrupted = _call(interrupter, body, float(request["timeout"]), cpu)
        _flush()
        end_processes()  # processes a call started end with it: nothing outlives its limits
        wall = time.monotonic() - started
        usage = {}
        if before is not None:
            after = _usage()
            usage = {"cpu": after[0] - before[0], "maxrss": after[1]}
        channel.send(op="done", exit=code, interrupted=interrupted, wall=wall, **usage)
        interrupter.idle(cpu)  # and threads it left get at most its CPU time until the next


def _file_op(channel: Channel, request: dict, payload: bytes) -> None:
    """A session's read_file, write_file or list_files, on a path the host checked (absolute,
    normal, inside /workspace or /tmp); the answer is "done", with the error if there is one."""
    op, path, cap = request["op"], request["path"], int(request.get("cap") or 0)
    error = None
    try:
        if op == "read":
            _send_file(channel, path, cap)
        elif op == "write":
            _write_path(path, payload)
        else:
            _send_names(channel, path, cap)
    except OSError as exc:
        error = _FILE_ERRORS.get(exc.errno, exc.strerror or str(exc))
    channel.send(op="done", error=error)


_FILE_ERRORS = {
    errno.ELOOP: "a symbolic link: never followed",  # O_NOFOLLOW on the last name
    errno.ENOTDIR: "a name on the way is not a directory (links are never followed)",
}


def _open_path(path: str, flags: int, *, parents: bool = False) -> int:
    """Open `path` one name at a time from /, following no link on the way or at the end;
    `parents`: make the missing directories on the way."""
    names = path.strip("/").split("/")
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names[:-1]:
            if parents:
                with _suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
            below = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = below
        return os.open(names[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
    finally:
        os.close(fd)


def _send_file(channel: Channel, path: str, cap: int) -> None:
    # O_NONBLOCK: a fifo does not hang the open, and fstat then refuses it unread.
    fd = _open_path(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "not a regular file")
        if info.st_size > cap:
            raise OSError(0, f"{info.st_size} bytes: over limits.collect_size")
        name, left = path.lstrip("/"), info.st_size
        channel.send(op="file", name=name, value="")
        while left > 0 and (chunk := os.read(fd, min(left, CHUNK))):
            left -= len(chunk)
            channel.send(
                op="file", name=name, value=binascii.b2a_base64(chunk, newline=False).decode()
            )
        channel.send(op="end", name=name, value="")  # whole (what collect.Collected wants)
    finally:
        os.close(fd)


def _write_path(path: str, data: bytes) -> None:
    fd = _open_path(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, parents=True)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _send_names(channel: Channel, path: str, cap: int) -> None:
    """The names in a directory, a directory's with a "/" after it, in messages that each fit
    a datagram; at most `cap` bytes of them."""
    fd = _open_path(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(fd) as entries:
            names = sorted(
                e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries
            )
    finally:
        os.close(fd)
    batch: list[str] = []
    size = total = 0
    for name in names:
        total += len(name)
        if total > cap:
            raise OSError(0, "the listing is over limits.collect_size")
        encoded = len(json.dumps(name)) + 2
        if size + encoded > MESSAGE // 2:
            channel.send(op="names", names=batch)
            batch, size = [], 0
        batch.append(name)
        size += encoded
    channel.send(op="names", names=batch)


def _usage() -> tuple[float, int]:
    """CPU seconds of this process and its waited children; this process's maxrss."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return cpu, own.ru_maxrss * 1024


def _call(
    interrupter: _Interrupter, body: object, timeout: float, cpu: float | None
) -> tuple[int | None, bool]:
    """Run one call; (exit code or None for "interrupted", interrupted by its deadline)."""
    try:
        try:
            interrupter.arm(timeout, cpu)
            body()  # type: ignore[operator]
        finally:
            interrupter.disarm()
    except SystemExit as exc:
        return _exit_code(exc), False
    except KeyboardInterrupt as exc:
        _show(exc)
        return None, interrupter.fired
    except BaseException as exc:
        _show(exc)
        return 1, False
    return 0, False


if __name__ == "__main__":
    {"pool": pool, "session": session}[sys.argv[1]](Channel())

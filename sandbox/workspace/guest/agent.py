"""The program inside a workspace: it starts each request in a process of its own.

It is the workload of an ordinary sandbox run (namespaces, mounts, the unprivileged uid, no
capabilities, seccomp and the cgroup are all in place before it starts), started as
`python3 -c <this file's source>`. Standard library only: the `stockade` package is not
visible inside. `workspace/workspace.py` is its other end.

fd 0 is a SOCK_SEQPACKET control socket to the host: one JSON request per datagram, with
fds beside it, the first a socket of the request's own that its answers go back on (JSON
datagrams, the last one "done"). For every request this process forks a handler and goes
back to listening, so requests run at once and one that dies takes nothing else with it.

exec: the handler is the command's keeper. It makes a session of its own and becomes a child
subreaper, so every process of the command's tree (double forks and setsid included) stays
below it; it forks the command with the stdio it was given, and at the command's end, its
timeout, its CPU time, or the host's word (end of file on the request's socket) it kills
that whole tree, found through /proc, and reports the exit status. Files: the handler opens
paths one name at a time from /, following no link on the way or at the end, as the
workload's own user; contents travel through the pipe or memfd that came with the request.

With no handler left for `idle` seconds (and no request) this process exits, which ends the
sandbox: the run's init takes everything left with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import json
import os
import resource
import select
import signal
import socket
import stat
import sys
import time

# Copies (the package is not visible here): tests/unit/test_zygote_constants.py holds them.
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36
MESSAGE = 1 << 16
IDLE_EXIT = 87  # the host's workspace.IDLE_EXIT: ended for being idle
_TICK = 0.1  # seconds between checks of a command's CPU time
_CHUNK = 1 << 16
_CLOCK = os.sysconf("SC_CLK_TCK")
# Ignored here (Python ignores the first two itself), set back to default for each command.
_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
            signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)  # fmt: skip
_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def _send(sock: socket.socket, **message: object) -> None:
    # OSError: the host stopped listening (it gave up on the request): nothing to say
    with contextlib.suppress(OSError):
        sock.send(json.dumps(message).encode())


# ------------------------------------------------------------------------------ the loop


def main() -> None:
    control = socket.socket(fileno=os.dup(0))
    _null(0)
    _prctl(PR_SET_DUMPABLE, 0)  # commands share our uid: keep them out of our memory
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # what a dead keeper leaves comes here, to be ended
    for number in _IGNORED:  # commands share our uid and may signal us; not SIGKILL
        signal.signal(number, signal.SIG_IGN)
    data = control.recv(MESSAGE)
    if not data:
        return
    idle = float(json.loads(data)["idle"])
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    gc.freeze()  # every handler is forked from us: the collector then leaves these pages be
    _send(control, op="ready")
    _null(1, 2)  # what went wrong starting is on stderr, for the host; nothing after that
    serve(control, idle, wake_r)


def _null(*fds: int) -> None:
    null = os.open("/dev/null", os.O_RDWR)
    for fd in fds:
        os.dup2(null, fd)
    os.close(null)


def serve(control: socket.socket, idle: float, wake: int) -> None:
    handlers: set[int] = set()
    spare: tuple[int, socket.socket] | None = None
    last = time.monotonic()
    poller = select.poll()
    poller.register(control, select.POLLIN)
    poller.register(wake, select.POLLIN)
    while True:
        quiet = time.monotonic() - last
        if not handlers and quiet >= idle:
            os._exit(IDLE_EXIT)
        if spare is None:  # the next request's handler, forked ahead: off its way
            spare = _fork(control, wake)
        events = dict(poller.poll(None if handlers else (idle - quiet) * 1000))
        if wake in events:
            while _drained(wake):
                pass
            if _reap(handlers, spare[0] if spare else 0):
                last = time.monotonic()
            if spare is not None and not _alive(spare[0]):
                spare[1].close()
                spare = None
        if control.fileno() in events:
            data, fds, _, _ = socket.recv_fds(control, MESSAGE, 8)
            if not data:  # the host closed the workspace, or is gone: the init ends the rest
                os._exit(0)
            last = time.monotonic()
            if spare is None:
                spare = _fork(control, wake)
            if spare is None:  # no process can be made now (the pids limit)
                _refuse(fds, "fork: no process could be made")
                continue
            pid, sock = spare
            spare = None
            try:
                socket.send_fds(sock, [data], fds)
                handlers.add(pid)
            except OSError as exc:  # it was killed meanwhile
                _refuse([os.dup(fds[0])], f"the request's handler is gone ({exc.strerror})")
            finally:
                sock.close()
                for fd in fds:
                    os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _refuse(fds: list[int], why: str) -> None:
    reply = socket.socket(fileno=fds[0])
    _send(reply, op="done", error={"errno": errno.EAGAIN, "message": why})
    reply.close()
    for fd in fds[1:]:
        os.close(fd)


def _fork(control: socket.socket, wake: int) -> tuple[int, socket.socket] | None:
    """A handler waiting for its request on a socket of its own; None when no process can
    be made now."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return None
    if pid == 0:
        code = 1
        try:
            for sock in (control, ours):
                sock.close()
            os.close(wake)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            data, fds, _, _ = socket.recv_fds(theirs, MESSAGE, 8)
            theirs.close()
            code = _handle(json.loads(data), fds) if data else 0
        finally:
            os._exit(code)
    theirs.close()
    return pid, ours


def _drained(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False


def _reap(handlers: set[int], spare: int) -> bool:
    """Reap what ended; True when a handler did. Processes a dead keeper left (they come to
    us) are ended: a keeper that did not end its tree was killed, and its tree goes too."""
    ended = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        mine = pid in handlers or pid == spare
        clean = mine and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        ended = ended or pid in handlers
        handlers.discard(pid)
        if not clean:  # an orphan, or a keeper that did not end well: end what it left
            for orphan, _ in _tree(os.getpid(), deep=False):
                if orphan not in handlers and orphan != spare:
                    _kill(orphan)


def _handle(request: dict, fds: list[int]) -> int:
    os.set_inheritable(fds[0], False)
    reply = socket.socket(fileno=fds[0])
    if request["op"] == "exec":
        return keep(reply, request, fds[1:])
    answer: dict = {}
    try:
        answer = FILE_OPS[request["op"]](reply, request, fds[1:]) or {}
    except (OSError, ValueError) as exc:
        answer = {"error": _error(exc, request["op"])}
    _send(reply, op="done", **answer)
    return 0


def _error(exc: BaseException, what: str) -> dict:
    number = exc.errno if isinstance(exc, OSError) and exc.errno else 0
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return {"errno": number, "message": f"{what}: {text}"[:400]}


# ------------------------------------------------------------------------------ commands


def keep(reply: socket.socket, request: dict, fds: list[int]) -> int:
    """One command: spawn it, watch it, end its whole tree, say how it ended."""
    os.setsid()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_DUMPABLE, 1)  # an ordinary process of the workload now; its /proc is its own
    adj = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
    os.write(adj, b"1000")  # a command dies first, not the guest (inherited by the command)
    os.close(adj)
    began = time.monotonic()
    pid, failed = _spawn(request, fds)
    for fd in fds:
        os.close(fd)
    if pid is None:
        ran = failed["step"] == "exec"  # as a shell says: 127 not found, 126 not runnable
        code = (127 if failed["errno"] == errno.ENOENT else 126) if ran else 125
        _send(reply, op="done", status=code << 8, why=None, failed=failed, wall=0.0)
        return 0
    if request.get("announce"):
        _send(reply, op="started")
    status, why = _watch(reply, pid, began, request.get("timeout"), request.get("cpu"))
    status = _end_tree(pid, status)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = request.get("cpu")
    if why is None and cpu and usage.ru_utime + usage.ru_stime >= cpu:
        why = "cpu"  # it ran out between two checks (the tree may die of it, or of SIGXCPU)
    _send(
        reply,
        op="done",
        status=status,
        why=why,
        wall=time.monotonic() - began,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss=usage.ru_maxrss * 1024,
    )
    reply.close()  # now: our exit, which would close it too, first tears down our memory
    return 0


def _spawn(request: dict, fds: list[int]) -> tuple[int | None, dict | None]:
    """posix_spawn the command (a vfork: far cheaper than forking this interpreter) with its
    stdio, in our directory, with our limits; (its pid, None) or (None, the failed step)."""
    step = "cwd"
    try:
        os.chdir(request["cwd"])
        step = "exec"
        if request.get("cpu"):  # a backstop per process: the keeper times the whole tree
            seconds = int(-(-request["cpu"] // 1)) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
        for fd in fds:  # received fds are inheritable: only the dup2s below reach it
            os.set_inheritable(fd, False)
        argv, env = request["argv"], request["env"]
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
        path = _lookup(argv[0], env.get("PATH", ""))
        pid = os.posix_spawn(path, argv, env, file_actions=actions, setsigdef=_IGNORED,
                             setsigmask=())  # fmt: skip
        return pid, None
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.ENOMEM):  # no process could be made (pids)
            step = "fork"
        return None, {"step": step, "errno": exc.errno or 0}


def _lookup(name: str, path: str) -> str:
    """`name` on the command's PATH, as a shell finds it (posix_spawnp would search ours)."""
    if "/" in name:
        return name
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(errno.ENOENT, "not found")


def _watch(
    reply: socket.socket, pid: int, began: float, timeout: float | None, cpu: float | None
) -> tuple[int | None, str | None]:
    """Until the command's process exits (its wait status), or why it must end now."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(reply, select.POLLIN)
    deadline = began + timeout if timeout else float("inf")
    check = began + _TICK
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None, "timeout"
            if cpu and now >= check:
                check = now + _TICK
                if _tree_cpu() >= cpu:
                    return None, "cpu"
            wait = min(deadline - now, _TICK if cpu else 3600.0)
            events = dict(poller.poll(max(wait, 0.0) * 1000))
            if pidfd in events:
                return os.waitpid(pid, 0)[1], None
            if reply.fileno() in events and not reply.recv(MESSAGE):
                return None, "killed"  # the host's word: end of file on our socket
    finally:
        os.close(pidfd)


def _tree(root: int, *, deep: bool = True) -> list[tuple[int, int]]:
    """Every process below `root` (pid, CPU clock ticks: its own and its waited children's),
    from /proc: a process whose parent died is handed to its nearest subreaper, still below.
    Not `deep`: its children only."""
    children: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY | os.O_CLOEXEC)
            try:
                text = os.read(fd, 4096)
            finally:
                os.close(fd)
        except OSError:
            continue
        fields = text[text.rfind(b")") + 2 :].split()
        ticks = sum(int(value) for value in fields[11:15])
        children.setdefault(int(fields[1]), []).append((int(name), ticks))
    found, todo = [], [root]
    while todo:
        for pid, ticks in children.get(todo.pop(), ()):
            found.append((pid, ticks))
            if deep:
                todo.append(pid)
    return found


def _tree_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # what we have reaped
    ticks = sum(ticks for _, ticks in _tree(os.getpid()))
    return usage.ru_utime + usage.ru_stime + ticks / _CLOCK


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _end_tree(main: int, status: int | None) -> int | None:
    """SIGKILL every process below us and reap them all (a fork racing with it is found on
    the next pass: its parent's death hands it to us). The command's status if it is
    reaped here."""
    while True:
        try:
            pid, reaped = os.waitpid(-1, os.WNOHANG)
            if pid == 0:  # some still run: kill every process below us, wait for one
                for below, _ in _tree(os.getpid()):
                    _kill(below)
                pid, reaped = os.waitpid(-1, 0)
        except ChildProcessError:
            return status  # no child left, so nothing below us: the usual end
        if pid == main and status is None:
            status = reaped


# ------------------------------------------------------------------------------ files


def _walk(path: str, *, parents: bool = False) -> tuple[int, str]:
    """The directory holding `path` (an O_PATH fd) and its last name, reached one name at a
    time from /, following no link; `parents`: make the missing directories on the way."""
    names = path.strip("/").split("/")
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    for name in names[:-1]:
        try:
            if parents:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
            below = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = below
    return fd, names[-1]


def _open(path: str, flags: int, mode: int = 0o644, *, parents: bool = False) -> int:
    parent, name = _walk(path, parents=parents)
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
    finally:
        os.close(parent)


def _create(path: str, flags: int, mode: int = 0o644) -> int:
    """`path` opened to write (made, with its parents, if need be), a regular file only.
    O_NONBLOCK: a fifo fails the open (no reader) or fstat (a reader) at once, where a
    blocking open or write would hold this handler, and a pid, until its timeout."""
    flags |= os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY
    fd = _open(path, flags, mode, parents=True)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, "not a regular file")
    os.set_blocking(fd, True)
    return fd


def _copy(read: object, target: int) -> None:
    """Everything `read` (os.read on an fd, or a file's read) gives, written to `target`."""
    while chunk := read(_CHUNK):  # type: ignore[operator]
        view = memoryview(chunk)
        while view:
            view = view[os.write(target, view) :]


def read(reply: socket.socket, request: dict, fds: list[int]) -> dict:
    # O_NONBLOCK: a fifo does not hang the open, and fstat then refuses it unread.
    fd = _open(request["path"], os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a directory")
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "not a regular file")
        if info.st_size > request["cap"]:
            raise OSError(errno.EFBIG, f"{info.st_size} bytes: over limits.collect_size")
        _send(reply, op="size", size=info.st_size)
        os.set_blocking(fd, True)
        _copy(lambda size: os.read(fd, size), fds[0])
    finally:
        os.close(fd)
    return {}


def write(reply: socket.socket, request: dict, fds: list[int]) -> dict:
    fd = _create(request["path"], os.O_EXCL if request["exclusive"] else os.O_TRUNC)
    try:
        _copy(lambda size: os.read(fds[0], size), fd)
    finally:
        os.close(fd)
    return {}


def listing(reply: socket.socket, request: dict, fds: list[int]) -> dict:
    fd = _open(request["path"], os.O_RDONLY | os.O_DIRECTORY)
    room, batch, size = request["cap"], [], 0
    with os.scandir(fd) as entries:
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            row = [entry.name, _kind(info.st_mode), info.st_size, info.st_mtime]
            encoded = len(json.dumps(row)) + 2
            room -= encoded
            if room < 0:
                raise OSError(errno.EFBIG, "the listing is over limits.collect_size")
            if size + encoded > MESSAGE // 2:
                _send(reply, op="entries", entries=batch)
                batch, size = [], 0
            batch.append(row)
            size += encoded
    _send(reply, op="entries", entries=batch)
    return {}


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


def remove(reply: socket.socket, request: dict, fds: list[int]) -> dict:
    parent, name = _walk(request["path"])
    try:
        if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=parent)  # a link goes itself, never what it points to
        elif request["recursive"]:
            import shutil  # here: every fork of the guest would carry it

            os.fchdir(parent)
            shutil.rmtree(name)  # by fds, never following a link (shutil's safe walk)
        else:
            os.rmdir(name, dir_fd=parent)
    finally:
        os.close(parent)
    return {}


def export(reply: socket.socket, request: dict, fds: list[int]) -> dict:
    """The tree below `path` as a tar (PAX) into the pipe: directories (empty ones too),
    regular files, links as links; nothing else. Walks by fchdir and "..", so neither depth
    nor path length is limited, and opens every name without following a link."""
    import tarfile  # here: every fork of the guest would carry it and what it imports

    pax = tarfile.PAX_FORMAT
    with os.fdopen(fds[0], "wb") as out, tarfile.open(fileobj=out, mode="w|", format=pax) as tar:
        top = _open(request["path"], os.O_RDONLY | os.O_DIRECTORY)
        os.fchdir(top)
        os.close(top)
        stack: list[tuple[str, list[str]]] = []
        prefix, left = "", sorted(os.listdir("."), reverse=True)
        while left or stack:
            if not left:
                os.chdir("..")
                prefix, left = stack.pop()
                continue
            name = left.pop()
            info = os.stat(name, follow_symlinks=False)
            member = tarfile.TarInfo(prefix + name)
            member.mode, member.mtime = info.st_mode & 0o7777, int(info.st_mtime)
            member.type = tarfile.DIRTYPE if stat.S_ISDIR(info.st_mode) else tarfile.REGTYPE
            if stat.S_ISDIR(info.st_mode):
                tar.addfile(member)
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                os.fchdir(fd)
                os.close(fd)
                stack.append((prefix, left))
                prefix, left = prefix + name + "/", sorted(os.listdir("."), reverse=True)
            elif stat.S_ISLNK(info.st_mode):
                member.type, member.linkname = tarfile.SYMTYPE, os.readlink(name)
                tar.addfile(member)
            elif stat.S_ISREG(info.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
                with os.fdopen(fd, "rb") as file:
                    member.size = os.fstat(fd).st_size
                    tar.addfile(member, file)
    return {}


def import_(reply: socket.socket, request: dict, fds: list[int]) -> dict:
    """Unpack a tar into `path`: directories, regular files and symbolic links (made as
    links, never followed: one on the way of a later member fails it); anything else, an
    absolute name or a ".." is refused, naming the member."""
    import tarfile  # here: every fork of the guest would carry it and what it imports

    try:
        with os.fdopen(fds[0], "rb") as data, tarfile.open(fileobj=data, mode="r:*") as tar:
            for member in tar:
                _unpack(tar, member, request["path"])
    except tarfile.TarError as exc:
        raise ValueError(f"not a tar archive we can read: {exc}") from None
    return {}


def _unpack(tar: object, member: object, base: str) -> None:
    """One member of `tar` (a tarfile.TarFile) under `base`."""
    name, mode = member.name, member.mode  # type: ignore[attr-defined]
    names = [n for n in name.split("/") if n not in ("", ".")]
    if name.startswith("/") or ".." in names:
        raise ValueError(f"{name!r}: outside the directory")
    if not names:
        return
    path = base + "/" + "/".join(names)
    if member.isdir():  # type: ignore[attr-defined]
        _make_dir(path, mode)
    elif member.isfile():  # type: ignore[attr-defined]
        fd = _create(path, os.O_TRUNC, mode & 0o777)
        try:
            _copy(tar.extractfile(member).read, fd)  # type: ignore[attr-defined]
            os.utime(fd, (member.mtime, member.mtime))  # type: ignore[attr-defined]
        finally:
            os.close(fd)
    elif member.issym():  # type: ignore[attr-defined]
        parent, last = _walk(path, parents=True)
        try:
            os.symlink(member.linkname, last, dir_fd=parent)  # type: ignore[attr-defined]
        finally:
            os.close(parent)
    else:
        raise ValueError(f"{name!r}: only directories, files and links are taken")


def _make_dir(path: str, mode: int) -> None:
    parent, name = _walk(path, parents=True)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        os.fchmod(fd, (mode & 0o777) | 0o700)  # ours to fill: later members go in it
        os.close(fd)
    finally:
        os.close(parent)


FILE_OPS = {"read": read, "write": write, "list": listing, "remove": remove,
            "export": export, "import": import_}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

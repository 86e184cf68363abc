"""A uid (and gid) of its own for each live sandbox, so that no tenant shares another's
per-user kernel counts.

The kernel counts some things per user, not per namespace or cgroup: fds in flight over unix
sockets (checked against the sender's RLIMIT_NOFILE), queued signals (RLIMIT_SIGPENDING),
POSIX message queue bytes (RLIMIT_MSGQUEUE), pipe pages (fs.pipe-user-pages-soft), inotify
instances and watches, keys. Sandboxes of one uid share each of them: one that spends it
starves the others, and reads their use (SigQ in /proc/self/status). So every sandbox takes
a uid of its own from a range for as long as it lives, as isolate gives each box its own.

A uid is taken with a lock file per uid under a directory only its owner can write
(`/run/stockade/uids` as root), locked with flock(LOCK_EX | LOCK_NB) by the sandbox's
supervisor for the sandbox's whole life. The kernel drops a flock with the last fd of its open
file, so a uid comes back when its sandbox ends, and also when its supervisor is SIGKILLed
(the run dies with it: its init has PR_SET_PDEATHSIG). Two processes can never hold one uid:
the lock is the machine's, not a process's. A uid that names a user or group on the host
(/etc/passwd, /etc/group) or lies in a range delegated to a user (/etc/subuid, /etc/subgid:
their containers' files) is never handed out, whatever the range says.

Without root, the ids come from the caller's own /etc/subuid and /etc/subgid ranges, mapped
through newuidmap and newgidmap (see namespaces.enter_user_namespace); where those are
missing, every sandbox is the caller's one uid, and a warning says what they share.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import errno
import fcntl
import os
import random
import stat
from collections.abc import Iterator
from typing import NamedTuple

from stockade.errors import SetupError, UnsupportedError

# The default range: 0x70000000 + 64 Ki. systemd's table (https://systemd.io/UIDS-GIDS/) leaves
# 1879048192-2147352575 unused by anything it allocates: above its container ranges
# (systemd-nspawn's 524288-1879048191), below its foreign range (2147352576-2147418111) and
# below 2^31, which some tools read as negative. It is far from login.defs' users
# (1000-60000), DynamicUser (61184-65519), nobody (65534), and from useradd's subordinate
# ranges (SUB_UID_MIN 100000 to SUB_UID_MAX 600100000).
DEFAULT_FIRST = 0x7000_0000
DEFAULT_RANGE = f"{DEFAULT_FIRST}-{DEFAULT_FIRST + 0xFFFF}"
MAX_ID = (1 << 32) - 2  # (uid_t) -1 means "unchanged" to setresuid and chown
NOBODY = 65534  # inside a user namespace (without root): what the workload is called
SHARED_COUNTS = (
    "fds in flight over unix sockets, queued signals (RLIMIT_SIGPENDING), POSIX message "
    "queue bytes, pipe pages (fs.pipe-user-pages-soft)"
)


def parse_range(text: str) -> tuple[int, int]:
    """`"FIRST-LAST"` (inclusive) as two ints; ValueError says what is wrong."""
    first, dash, last = text.partition("-")
    if not (dash and first.strip().isdigit() and last.strip().isdigit()):
        raise ValueError(f"expected FIRST-LAST, two whole numbers, e.g. {DEFAULT_RANGE!r}")
    low, high = int(first), int(last)
    if not 1 <= low <= high <= MAX_ID:
        raise ValueError(f"{text!r}: need 1 <= FIRST <= LAST <= {MAX_ID} (0 is root)")
    return low, high


class IdPlan(NamedTuple):
    """The policy's ids: its own uid and gid (None: the sandbox's own, from first..last)."""

    uid: int | None = None
    gid: int | None = None
    first: int = DEFAULT_FIRST
    last: int = DEFAULT_FIRST + 0xFFFF


class Lease(NamedTuple):
    """A uid (equal to its gid) held for one live sandbox; `release` gives it back."""

    id: int
    fd: int
    path: str
    shared: bool = False  # a fixed uid's (see share): others may hold the file too

    def release(self) -> None:
        # Unlinked while still locked: a taker that opened the old file finds it is no longer
        # the one at the path (see _try), so nobody ever locks a stale inode. A shared hold
        # leaves it: a new file at the path would let a lease in beside the other holders.
        if not self.shared:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        os.close(self.fd)


def lock_dir() -> str:
    """Where the locks live: root's under /run (per boot, like the sandboxes), a user's in
    their home's state directory. Always the same one for a user: /run/user/UID comes and
    goes with login sessions, and /tmp may be a service's private one, and two directories
    would hand one uid to two sandboxes."""
    me = os.geteuid()
    if me == 0:
        return "/run/stockade/uids"
    import pwd  # only here: a run as root never needs it

    try:
        home = pwd.getpwuid(me).pw_dir  # not $HOME, which a caller may set to anything
    except KeyError:
        home = "/"
    with contextlib.suppress(OSError):
        if home != "/" and os.stat(home).st_uid == me:
            return f"{home}/.local/state/stockade/uids"
    return f"/tmp/stockade-uids-{me}"  # a user without a home of their own: a service's


def _own_dir(path: str) -> None:
    """Make `path` (0700, ours), or check it is ours: a directory another user could write
    would let them hold every uid, or steal one."""
    with contextlib.suppress(FileExistsError):
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise UnsupportedError(
            f"the uid lock directory {path} is not a directory owned by uid {os.geteuid()} "
            "that only its owner may write",
            f"remove it (it holds only lock files) and run again: `rm -r {path}`",
        )


def lease(
    first: int,
    last: int,
    *,
    source: str = "process.uid_range",
    delegated: bool = False,
    directory: str | None = None,
) -> Lease:
    """A free uid of first..last, locked for the caller until it releases it or exits.
    Tries from a random place in the range, so that callers rarely race for one uid.
    `source` names the range in the error; in a range `delegated` to the caller (its own
    in /etc/subuid), only the ids of the host's users and groups are skipped."""
    directory = directory or lock_dir()
    _own_dir(directory)
    taken = host_ids()
    if delegated:
        taken = taken._replace(spans=())
    count = last - first + 1
    start = random.randrange(count)
    for step in range(count):
        candidate = first + (start + step) % count
        if not taken.holds(candidate) and (held := _try(directory, candidate)):
            return held
    raise SetupError(
        "uids.lease",
        errno.EAGAIN,
        f"every uid of {source} {first}-{last} that no host user or group owns is "
        "held by a live sandbox: widen the range, or run fewer sandboxes at once",
    )


def share(uid: int) -> Lease | None:
    """Mark `uid`, a policy's own fixed uid, as in use while the caller holds it, so that no
    lease hands it to another sandbox meanwhile (sandboxes of that policy share it anyway).
    None when a lease holds it already: the caller's warning says it is shared."""
    directory = lock_dir()
    _own_dir(directory)
    return _try(directory, uid, fcntl.LOCK_SH)


def _try(directory: str, uid: int, how: int = fcntl.LOCK_EX) -> Lease | None:
    path = f"{directory}/{uid}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        # Its holder may have released it (unlinked) between our open and our lock: then we
        # hold a file nobody else will look at, and the uid may already be another's.
        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
            return Lease(uid, fd, path, shared=how == fcntl.LOCK_SH)
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return None


MAPPERS = ("newuidmap", "newgidmap")
_TOOL_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin")


def mapper(name: str) -> str | None:
    """Where the setuid tool `name` of the shadow suite is (a fixed list of directories: not
    the caller's PATH, whose first match could be anyone's program)."""
    return next((f"{d}/{name}" for d in _TOOL_DIRS if os.access(f"{d}/{name}", os.X_OK)), None)


def own_subordinate() -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The caller's first subuid and subgid ranges, when both exist and newuidmap and
    newgidmap are there to map them; else None."""
    if not all(map(mapper, MAPPERS)):
        return None
    import pwd  # only here: a run as root never needs it

    me = os.geteuid()
    try:
        name = pwd.getpwuid(me).pw_name
    except KeyError:
        name = None
    found = [subordinate(f"/etc/{kind}", name, me) for kind in ("subuid", "subgid")]
    return (found[0][0], found[1][0]) if all(found) else None


def subordinate_lease() -> tuple[Lease, int] | None:
    """Without root: a uid of the caller's subuid range held for one sandbox, and the gid
    at the same place of its subgid range; None when there are none to map (see above)."""
    ranges = own_subordinate()
    if ranges is None:
        return None
    (uid_first, uid_last), (gid_first, gid_last) = ranges
    last = uid_first + min(uid_last - uid_first, gid_last - gid_first)
    held = lease(uid_first, last, source="/etc/subuid", delegated=True)
    return held, gid_first + held.id - uid_first


class Ranges(NamedTuple):
    """Single ids and (first, last) ranges, as the host's files give them."""

    single: frozenset[int]
    spans: tuple[tuple[int, int], ...]

    def holds(self, value: int) -> bool:
        return value in self.single or any(lo <= value <= hi for lo, hi in self.spans)


def host_ids() -> Ranges:
    """The ids that name a user or group of the host, or lie in a range delegated to a user:
    files on the host may belong to them. Read from the files, not NSS (which may ask a
    directory server on every run)."""
    single: set[int] = set()
    for path in ("/etc/passwd", "/etc/group"):
        for fields in _rows(path):
            if len(fields) > 2 and fields[2].isdigit():
                single.add(int(fields[2]))
    spans = [span for path in ("/etc/subuid", "/etc/subgid") for span in subordinate(path)]
    return Ranges(frozenset(single), tuple(spans))


def subordinate(
    path: str, owner: str | None = None, owner_id: int | None = None
) -> list[tuple[int, int]]:
    """The (first, last) ranges of a subuid/subgid file: all of them, or those of one user
    (named by name or by number, as the file may)."""
    found = []
    for fields in _rows(path):
        well_formed = len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit()
        if well_formed and int(fields[2]) and owner in (None, fields[0], str(owner_id)):
            first = int(fields[1])
            found.append((first, first + int(fields[2]) - 1))
    return found


def _rows(path: str) -> Iterator[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        if line and not line.startswith("#"):
            yield line.split(":")

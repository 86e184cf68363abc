"""The sandbox's filesystem: plan the new root (pure), then build it and pivot into it (child).

The new root is a tmpfs mounted on the per-run temp dir inside the child's private mount
namespace, so nothing the workload writes ever lands on the host's disk, and the host-side
temp dir stays an empty directory that the supervisor removes with rmdir (it never follows
a link or crosses a mount the workload planted: Judge0 CVE-2024-28185).

The host's runtime directories (/usr, the interpreter) are shown through read-only overlays
of the run's own, not bind mounts: a file lock (flock, POSIX and OFD record locks) belongs to
the inode it is taken on, and a bind shows the host's inode, shared by every run and by the
host. An overlay has its own superblock and inodes, so a lock taken inside stays inside the
run, while reads go to the host's file and its page cache. The few runtime *files* (such as
/etc/ld.so.cache) are copied into the tmpfs root for the same reason (see Copy).
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import errno
import os
import re
import stat
from typing import NamedTuple

from stockade.kernel import syscalls as sc

DEVICES = ("null", "zero", "full", "random", "urandom")
_ST_FLAGS = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


class Overlay(NamedTuple):
    """A host directory, shown read-only at `target` through an overlay of the run's own."""

    source: str
    target: str


class Copy(NamedTuple):
    """A host file, copied into the tmpfs root (read-only once the root is remounted).

    A file cannot be an overlay's layer, and an overlay of its directory would show what is
    under the file when the file is itself a bind mount (as /etc/localtime often is in a
    container), and cannot be mounted without privilege over a directory holding mounts.
    Runtime files are small configuration files: a copy per run costs less than a mount.
    """

    source: str
    target: str


class Device(NamedTuple):
    """The host's device node at the same path: a node of the run's own (made with mknod, so
    a lock on it is the run's alone), or, where no node can be made (in a user namespace), a
    bind of the host's."""

    target: str


class Tmpfs(NamedTuple):
    target: str
    options: str
    devices: bool = False  # its device nodes open (/dev: only the init makes any, as root)


class Symlink(NamedTuple):
    target: str
    points_to: str


class File(NamedTuple):
    target: str
    content: bytes


class Proc(NamedTuple):
    target: str = "/proc"


Mount = Overlay | Copy | Device | Tmpfs | Symlink | File | Proc


def _same_kind_and_values(self: tuple, other: object) -> bool:
    return type(other) is type(self) and tuple.__eq__(self, other)


def _differs(self: tuple, other: object) -> bool:
    return not _same_kind_and_values(self, other)


# A NamedTuple equals any tuple of the same values, so an Overlay would equal the Copy of the
# same paths, and a plan (compared to reuse a prepared run or its pickle) its changed twin.
for _kind in Mount.__args__:
    _kind.__eq__, _kind.__ne__ = _same_kind_and_values, _differs  # type: ignore[method-assign]


class RootPlan(NamedTuple):
    mounts: tuple[Mount, ...]
    uid: int  # the workload's; the supervisor sets the sandbox's own (kernel/uids.py)
    gid: int
    workspace: str = ""  # the /workspace tmpfs's options but its owner


def owned_mounts(plan: RootPlan) -> tuple[Mount, ...]:
    """What depends on the workload's ids, known only once its sandbox has taken them (the
    supervisor): /workspace owned by it, and the /etc/passwd and /etc/group naming it."""
    uid, gid = plan.uid, plan.gid
    return (
        Tmpfs("/workspace", f"{plan.workspace},uid={uid},gid={gid}"),
        File(
            "/etc/passwd",
            f"root:x:0:0::/:/bin/sh\nsandbox:x:{uid}:{gid}::/workspace:/bin/sh\n".encode(),
        ),
        File("/etc/group", f"root:x:0:\nsandbox:x:{gid}:\n".encode()),
    )


def plan_runtime(
    paths: tuple[str, ...], mount_points: frozenset[str] | None = None
) -> tuple[Mount, ...]:
    """Read-only overlays (directories) and copies (files) of the host's runtime; top-level
    links (merged /usr) become links. `mount_points`: the host's (read from mountinfo when
    not given), for the directories that hold mounts below them (see _show_directory)."""
    points = own_mount_points() if mount_points is None else mount_points
    planned: list[Mount] = []
    bound: list[str] = []
    for path in sorted(os.path.normpath(p) for p in paths):
        if any(path == b or path.startswith(b + "/") for b in bound):
            continue
        if os.path.islink(path):
            planned.append(Symlink(path, os.readlink(path)))
        elif os.path.isdir(path):
            planned += _show_directory(os.path.realpath(path), path, points)
            bound.append(path)
        elif os.path.exists(path):
            planned.append(Copy(os.path.realpath(path), path))
            bound.append(path)
    return tuple(planned)


def _show_directory(source: str, target: str, mount_points: frozenset[str]) -> list[Mount]:
    """One overlay of `source`; or, when mounts sit below it, one per part around them.

    In a user namespace the mounts it inherited are locked to the ones above them, and the
    kernel refuses an overlay whose layer holds a locked mount below it (EINVAL,
    "overlayfs: failed to clone lowerpath"). So a directory holding mounts is made in the
    root itself, and each of its entries shown on its own: a directory again (a mount point
    with nothing mounted below it is an overlay of that mount), a file copied, a link kept.
    As root the same plan shows the same tree: what is mounted below is shown, read-only.
    """
    if not below(source, mount_points):
        return [Overlay(source, target)]
    shown: list[Mount] = []
    for name in sorted(os.listdir(source)):
        path, inside = f"{source}/{name}", f"{target}/{name}"
        if os.path.islink(path):
            shown.append(Symlink(inside, os.readlink(path)))
        elif os.path.isdir(path):
            shown += _show_directory(path, inside, mount_points)
        elif os.path.isfile(path):
            shown.append(Copy(path, inside))
    return shown  # sockets, FIFOs and device nodes are left out, as an overlay's root is


def below(path: str, mount_points: frozenset[str]) -> list[str]:
    """The mount points strictly below `path`, sorted."""
    prefix = path.rstrip("/") + "/"
    return sorted(p for p in mount_points if p.startswith(prefix))


def own_mount_points(mountinfo: str = "/proc/self/mountinfo") -> frozenset[str]:
    with open(mountinfo) as file:
        return frozenset(unescape(line.split()[4]) for line in file if len(line.split()) > 4)


def unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def plan_mounts(
    runtime: tuple[str, ...],
    *,
    uid: int,
    gid: int,
    hostname: str,
    hosts: tuple[tuple[str, str], ...] = (),
    workspace_size: int,
    tmp_size: int,
    inodes: int,
    commands: tuple[tuple[str, str], ...] = (),
    packages: tuple[str, ...] = (),
) -> RootPlan:
    """Everything the new root holds, in the order the child mounts it. `commands` are
    (name, host path) pairs, linked in COMMANDS (the workload's interpreter); `packages` are
    host directories of Python packages, shown read-only at PACKAGES/0, PACKAGES/1, ..."""
    scratch = f"size={tmp_size},nr_inodes={inodes},mode=1777"
    mounts: list[Mount] = [
        *plan_runtime(runtime),
        *(Symlink(f"{COMMANDS}/{name}", target) for name, target in commands),
        *(Overlay(source, f"{PACKAGES}/{i}") for i, source in enumerate(packages)),
        Tmpfs("/dev", "size=64k,nr_inodes=64,mode=0755", devices=True),
        *(Device(f"/dev/{name}") for name in DEVICES),
        Proc(),  # after /dev: its masks are the run's own /dev/null
        Symlink("/dev/fd", "/proc/self/fd"),
        *(Symlink(f"/dev/{n}", f"/proc/self/fd/{i}") for i, n in enumerate(_STDIO)),
        Tmpfs("/dev/shm", scratch),
        Tmpfs("/tmp", scratch),
        *_etc_files(hostname, hosts),
    ]
    workspace = f"size={workspace_size},nr_inodes={inodes},mode=0700"
    return RootPlan(tuple(mounts), uid, gid, workspace)


# The runtime a policy shows by default; not every machine has each (lib32, libx32).
DEFAULT_READONLY = (
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
    "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
    "/etc/ssl", "/etc/ca-certificates", "/etc/localtime",
)  # fmt: skip


def missing_paths(paths: tuple[str, ...]) -> tuple[str, ...]:
    """The paths a policy asked to show that this machine lacks, but for the defaults."""
    return tuple(p for p in paths if p not in DEFAULT_READONLY and not os.path.lexists(p))


_STDIO = ("stdin", "stdout", "stderr")
_ETC_FILES = ("passwd", "group", "hostname", "hosts", "nsswitch.conf", "resolv.conf")
# The run's own commands, first on the workload's PATH: links to the policy's interpreter.
# Not under /usr or /opt, which the host's directories may cover.
COMMANDS = "/.stockade/bin"
# Package directories, each at a path of the run's own: at the host's path, a venv under /tmp
# would be hidden by the run's /tmp.
PACKAGES = "/.stockade/packages"
# What every run makes itself, which no host path may cover (the policy refuses it).
OWN_PATHS = (
    "/proc", "/dev", "/tmp", "/workspace", "/.stockade",
    *(f"/etc/{name}" for name in _ETC_FILES),
)  # fmt: skip


def _etc_files(hostname: str, hosts: tuple[tuple[str, str], ...]) -> list[File]:
    host_lines = [
        f"127.0.0.1\tlocalhost {hostname}",
        "::1\tlocalhost",
        *(f"{a}\t{n}" for n, a in hosts),
    ]
    return [
        File("/etc/hostname", f"{hostname}\n".encode()),
        File("/etc/hosts", ("\n".join(host_lines) + "\n").encode()),
        # Names resolve from /etc/hosts only: there is no resolver to ask.
        File("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files\n"),
        File("/etc/resolv.conf", b""),
    ]


# -- privileged half: runs in the child, in its own mount namespace ----------------------------


def build_root(root: str, plan: RootPlan) -> None:
    """Make the new root on `root`: a tmpfs holding the planned mounts and files."""
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    # Stand in the host's run dir before the tmpfs covers it: `.` then stays that empty
    # directory (the supervisor only ever rmdirs it), the empty second layer of every overlay.
    os.chdir(root)
    sc.mount("tmpfs", root, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    for mount in (*plan.mounts, *owned_mounts(plan)):
        apply(root, mount)


def apply(root: str, mount: Mount) -> None:
    """Make one planned mount (or file, or link) in the new root at `root`."""
    target = root + mount.target
    match mount:
        case Overlay(source, _):
            _make_mountpoint(target, directory=True)
            mount_overlay(source, target)
        case Copy(source, _):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _copy_file(source, target)
        case Device(_):
            try:
                _make_node(mount.target, target)
                return
            except PermissionError:  # a user namespace makes no device node: bind the host's
                pass
            _make_mountpoint(target, directory=False)
            sc.mount(mount.target, target, None, sc.MS_BIND)
            flags = sc.MS_NOSUID | sc.MS_NOEXEC
            # Keep the flags the source mount already has: in a user namespace they are
            # locked, and a remount that drops them fails with EPERM.
            flags |= os.statvfs(target).f_flag & _ST_FLAGS
            sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags)
        case Tmpfs(_, options, devices):
            _make_mountpoint(target, directory=True)
            flags = sc.MS_NOSUID | (sc.MS_NOEXEC if devices else sc.MS_NODEV)
            sc.mount("tmpfs", target, "tmpfs", flags, options)
        case Symlink(_, points_to):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(points_to, target)
        case File(_, content):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "xb") as file:
                file.write(content)
        case Proc():
            _make_mountpoint(target, directory=True)
            sc.mount("proc", target, "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
            _lock_proc(target)


# What Docker masks in /proc, and two more. Masked files read as empty (the run's own
# /dev/null bound over them): the keys and key quotas of every user on the machine (keys,
# key-users), other processes' timers and scheduling (timer_list, sched_debug), kernel memory
# and latencies (kcore, latency_stats), the host's boot parameters (cmdline: disk ids,
# sometimes secrets given to the kernel) and kernel build options (config.gz: a map for
# picking an exploit). No program needs them to run. Masked directories are an empty
# read-only tmpfs.
PROC_MASKED_FILES = (
    "keys", "key-users", "timer_list", "sched_debug", "latency_stats", "kcore", "cmdline",
    "config.gz",
)  # fmt: skip
PROC_MASKED_DIRS = ("acpi", "scsi", "asound")
# Read-only even for a process that somehow regains root: sysctls, and what writing would
# act on: PSI triggers (pressure/*, writable by everyone), interrupts, buses, the SysRq key.
PROC_READ_ONLY = ("sys", "pressure", "irq", "bus", "fs", "sysrq-trigger")


def _lock_proc(proc: str) -> None:
    """Mask and lock the parts of a fresh /proc that are not the run's (see above); each only
    where this kernel has it."""
    null = os.path.join(os.path.dirname(proc), "dev/null")  # not the host's: its file locks
    for name in PROC_MASKED_FILES:
        if os.path.isfile(path := f"{proc}/{name}"):
            sc.mount(null, path, None, sc.MS_BIND)
    for name in PROC_MASKED_DIRS:
        if os.path.isdir(path := f"{proc}/{name}"):
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV, "size=0")
    for name in PROC_READ_ONLY:
        if os.path.exists(path := f"{proc}/{name}"):
            sc.mount(path, path, None, sc.MS_BIND)
            sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


def _make_node(source: str, target: str) -> None:
    """A character device node like the host's `source`, usable by everyone (as on the host)."""
    host = os.stat(source)
    if not stat.S_ISCHR(host.st_mode):
        raise OSError(errno.EINVAL, f"{source} is not a character device")
    os.mknod(target, stat.S_IFCHR | 0o666, host.st_rdev)
    os.chmod(target, 0o666)  # mknod applies the umask


def mount_overlay(source: str, target: str) -> None:
    """A read-only overlay of the host directory `source` on `target`. With no upper layer an
    overlay needs two lower ones: the second is `.`, the empty run dir (see build_root).
    Mounts below `source` are not shown through it: plan_runtime shows them each apart."""
    # Read-only, nosuid, nodev whatever the source; noexec kept where the source has it.
    flags = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | (os.statvfs(source).f_flag & sc.MS_NOEXEC)
    try:
        sc.mount("overlay", target, "overlay", flags, f"lowerdir={_escape(source)}:.")
    except OSError as exc:
        # Never fall back to a bind: it would share file locks with other runs and the host.
        inside = below(source, own_mount_points()) if exc.errno == errno.EINVAL else []
        locked = f"; mounts below it: {', '.join(inside)}" if inside else ""
        raise OSError(
            exc.errno,
            f"cannot mount a read-only overlay of {source} ({exc.strerror}{locked}); a bind "
            "mount instead would share its file locks with other runs and the host",
        ) from exc


def _copy_file(source: str, target: str) -> None:
    """Copy a regular file with its permission bits (and its owner where we may: as root)."""
    try:
        # Never open anything else: opening a device can act (a watchdog), a FIFO can hang.
        if not stat.S_ISREG(os.stat(source, follow_symlinks=False).st_mode):
            raise OSError(errno.EINVAL, "neither a directory nor a regular file")
        with open(source, "rb", opener=_open_regular) as src, open(target, "xb") as dst:
            info = os.fstat(src.fileno())
            while os.sendfile(dst.fileno(), src.fileno(), None, 1 << 20):
                pass
            if os.geteuid() == 0:  # in a user namespace the owner may have no id here
                os.fchown(dst.fileno(), info.st_uid, info.st_gid)
            os.fchmod(dst.fileno(), stat.S_IMODE(info.st_mode) & 0o777)
    except OSError as exc:  # ENOSPC alone would not say which file
        raise OSError(
            exc.errno, f"cannot copy {source} into the run's root: {exc.strerror}"
        ) from exc


def _open_regular(path: str, flags: int) -> int:
    # Should the file be swapped after the check, a FIFO still cannot hang the setup.
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)


def _escape(path: str) -> str:
    # Overlay's option string separates layers with ':' and options with ','.
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _make_mountpoint(path: str, *, directory: bool) -> None:
    if directory:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))


def write_workspace(root: str, files: dict[str, bytes], uid: int, gid: int) -> None:
    """Copy the run's input files into the fresh /workspace, before the workload exists."""
    workspace = root + "/workspace"
    for relative, content in files.items():
        path = os.path.join(workspace, relative)
        for parent in _parents(workspace, relative):
            if not os.path.isdir(parent):
                os.mkdir(parent, 0o755)
                os.chown(parent, uid, gid)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as file:
            os.fchown(fd, uid, gid)
            file.write(content)


def _parents(base: str, relative: str) -> list[str]:
    parts = relative.split("/")[:-1]
    return [os.path.join(base, *parts[: i + 1]) for i in range(len(parts))]


def pivot_root(root: str) -> None:
    """Enter the new root and detach the old one, the way bubblewrap does: pivot_root(".", ".")
    stacks the old root under the new one, and a lazy unmount of "." removes it."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
    sc.mount(None, "/", None, sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV)

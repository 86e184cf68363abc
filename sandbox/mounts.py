"""The sandbox's filesystem: plan the new root (pure), then build it and pivot into it (child).

The new root is a tmpfs mounted on the per-run temp dir inside the child's private mount
namespace, so nothing the workload writes ever lands on the host's disk, and the host-side
temp dir stays an empty directory that the supervisor removes with rmdir (it never follows
a link or crosses a mount the workload planted: Judge0 CVE-2024-28185).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import _syscalls as sc

DEVICES = ("null", "zero", "full", "random", "urandom")
_ST_FLAGS = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    device: bool = False  # a device node: writable, keeps dev semantics


@dataclass(frozen=True)
class Tmpfs:
    target: str
    options: str


@dataclass(frozen=True)
class Symlink:
    target: str
    points_to: str


@dataclass(frozen=True)
class File:
    target: str
    content: bytes


@dataclass(frozen=True)
class Proc:
    target: str = "/proc"


Mount = Bind | Tmpfs | Symlink | File | Proc


@dataclass(frozen=True)
class RootPlan:
    mounts: tuple[Mount, ...]
    uid: int
    gid: int


def plan_runtime(paths: tuple[str, ...]) -> tuple[Mount, ...]:
    """Read-only binds of the host's runtime; top-level links (merged /usr) become links."""
    planned: list[Mount] = []
    bound: list[str] = []
    for path in sorted(os.path.normpath(p) for p in paths):
        if any(path == b or path.startswith(b + "/") for b in bound):
            continue
        if os.path.islink(path):
            planned.append(Symlink(path, os.readlink(path)))
        elif os.path.exists(path):
            planned.append(Bind(os.path.realpath(path), path))
            bound.append(path)
    return tuple(planned)


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
) -> RootPlan:
    """Everything the new root holds, in the order the child mounts it."""
    scratch = f"size={tmp_size},nr_inodes={inodes},mode=1777"
    mounts: list[Mount] = [
        *plan_runtime(runtime),
        Proc(),
        Tmpfs("/dev", "size=64k,nr_inodes=64,mode=0755"),
        *(Bind(f"/dev/{name}", f"/dev/{name}", device=True) for name in DEVICES),
        Symlink("/dev/fd", "/proc/self/fd"),
        *(Symlink(f"/dev/{n}", f"/proc/self/fd/{i}") for i, n in enumerate(_STDIO)),
        Tmpfs("/dev/shm", scratch),
        Tmpfs("/tmp", scratch),
        Tmpfs(
            "/workspace", f"size={workspace_size},nr_inodes={inodes},mode=0700,uid={uid},gid={gid}"
        ),
        *_etc_files(uid, gid, hostname, hosts),
    ]
    return RootPlan(tuple(mounts), uid, gid)


_STDIO = ("stdin", "stdout", "stderr")


def _etc_files(uid: int, gid: int, hostname: str, hosts: tuple[tuple[str, str], ...]) -> list[File]:
    host_lines = [
        f"127.0.0.1\tlocalhost {hostname}",
        "::1\tlocalhost",
        *(f"{a}\t{n}" for n, a in hosts),
    ]
    return [
        File(
            "/etc/passwd",
            f"root:x:0:0::/:/bin/sh\nsandbox:x:{uid}:{gid}::/workspace:/bin/sh\n".encode(),
        ),
        File("/etc/group", f"root:x:0:\nsandbox:x:{gid}:\n".encode()),
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
    sc.mount("tmpfs", root, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    for mount in plan.mounts:
        _apply(root, mount)


def _apply(root: str, mount: Mount) -> None:
    target = root + mount.target
    match mount:
        case Bind(source, _, device):
            _make_mountpoint(target, directory=os.path.isdir(source))
            sc.mount(source, target, None, sc.MS_BIND)
            flags = sc.MS_NOSUID | (sc.MS_NOEXEC if device else sc.MS_RDONLY | sc.MS_NODEV)
            # Keep the flags the source mount already has: in a user namespace they are
            # locked, and a remount that drops them fails with EPERM.
            flags |= os.statvfs(target).f_flag & _ST_FLAGS
            sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags)
        case Tmpfs(_, options):
            _make_mountpoint(target, directory=True)
            sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, options)
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
            # Sysctls stay read-only even for a process that somehow regains root.
            sc.mount(target + "/sys", target + "/sys", None, sc.MS_BIND)
            sc.mount(None, target + "/sys", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


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

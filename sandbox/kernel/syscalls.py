"""ctypes wrappers for the kernel calls that `os` lacks, in one place.

Every wrapper raises `OSError` with the errno and the call's name, like `os` does. Numbers
come from the kernel's uapi headers (<linux/sched.h>, <linux/mount.h>, <linux/prctl.h>,
<linux/capability.h>, <linux/seccomp.h>, <linux/bpf.h>); only x86_64 and aarch64 are supported.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Iterable

_libc = ctypes.CDLL(None, use_errno=True)

# clone(2) / unshare(2) flags, <linux/sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_INTO_CGROUP = 0x200000000  # clone3 only, kernel >= 5.7

# mount(2) flags, <linux/mount.h>
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

# prctl(2) options, <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# os.uname().machine is what platform.machine() returns on Linux, without importing platform
# (~3 ms of every command).
_MACHINE = os.uname().machine
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}[_MACHINE]
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}[_MACHINE]
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}[_MACHINE]
_SYS_BPF = {"x86_64": 321, "aarch64": 280}[_MACHINE]
_BPF_ATTR_SIZE = 144  # sizeof(union bpf_attr) in the 6.x uapi; the kernel accepts a larger one
_SYS_CLONE3 = 435  # the same on both (the generic syscall table)
_KEYCTL_JOIN_SESSION_KEYRING = 1
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _check(result: int, call: str, *args: object) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{call}({', '.join(map(repr, args))}): {os.strerror(err)}")
    return result


def _path(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare", hex(flags))


class _CloneArgs(ctypes.Structure):  # struct clone_args, <linux/sched.h>, up to `cgroup`
    _fields_ = tuple(
        (name, ctypes.c_uint64)
        for name in (
            "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
            "stack_size", "tls", "set_tid", "set_tid_size", "cgroup",
        )
    )  # fmt: skip


# PyDLL keeps the GIL across the call: the child wakes up holding it, as after os.fork().
_syscall_with_gil = ctypes.PyDLL(None, use_errno=True).syscall
_syscall_with_gil.restype = ctypes.c_long


def clone_into_cgroup(cgroup_fd: int) -> int:
    """fork(2), but the child starts in the cgroup `cgroup_fd` names (clone3 with
    CLONE_INTO_CGROUP): 0 in the child, its pid in the parent.

    A bare system call, so none of os.fork()'s bookkeeping runs in the child (at-fork hooks,
    the interpreter's thread state): only for a single-threaded caller whose child goes on
    with plain system calls. glibc (>= 2.34) asks the kernel for the thread id it signals,
    so raise() and abort() still reach the child itself.
    """
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=signal.SIGCHLD, cgroup=cgroup_fd)
    result = _syscall_with_gil(
        ctypes.c_long(_SYS_CLONE3), ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args))
    )
    return _check(result, "clone3", "CLONE_INTO_CGROUP", cgroup_fd)


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", fd, hex(nstype))


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    result = _libc.mount(
        _path(source),
        _path(target),
        _path(fstype),
        ctypes.c_ulong(flags),
        _path(data) if data else None,
    )
    _check(result, "mount", source, target, fstype, hex(flags), data)


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(_path(target), ctypes.c_int(flags)), "umount2", target, flags)


def pivot_root(new_root: str, put_old: str) -> None:
    result = _libc.syscall(ctypes.c_long(_SYS_PIVOT_ROOT), _path(new_root), _path(put_old))
    _check(result, "pivot_root", new_root, put_old)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    args = (ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5))
    return _check(_libc.prctl(ctypes.c_int(option), *args), "prctl", option, arg2)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def capset_empty() -> None:
    """Clear the effective, permitted and inheritable capability sets of this thread."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    result = _libc.syscall(ctypes.c_long(_SYS_CAPSET), ctypes.byref(header), data)
    _check(result, "capset", "empty")


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def seccomp_set_filter(program: bytes) -> None:
    """Load one classic-BPF program (an array of 8-byte `struct sock_filter`).

    Needs no_new_privs (or CAP_SYS_ADMIN); the kernel keeps every loaded filter and
    applies the strictest answer of all of them.
    """
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    result = _libc.prctl(
        ctypes.c_int(PR_SET_SECCOMP),
        ctypes.c_ulong(SECCOMP_MODE_FILTER),
        ctypes.c_void_p(ctypes.addressof(fprog)),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    _check(result, "prctl", "PR_SET_SECCOMP", f"<{len(program) // 8} instructions>")


def keyctl_join_session_keyring() -> None:
    """Join a new anonymous session keyring (keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL))."""
    result = _libc.syscall(
        ctypes.c_long(_SYS_KEYCTL), ctypes.c_int(_KEYCTL_JOIN_SESSION_KEYRING), None
    )
    _check(result, "keyctl", "KEYCTL_JOIN_SESSION_KEYRING", None)


def bpf(command: int, attr: bytes, name: str) -> int:
    """bpf(2) with `attr` (a union bpf_attr, zero-padded); `name` is the command's, for the
    error. Returns what the kernel did: an fd (close-on-exec) or 0."""
    buffer = ctypes.create_string_buffer(attr, _BPF_ATTR_SIZE)
    result = _libc.syscall(
        ctypes.c_long(_SYS_BPF), ctypes.c_int(command), buffer, ctypes.c_uint(_BPF_ATTR_SIZE)
    )
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({name}): {os.strerror(err)}")
    return int(result)


def close_fds_except(keep: Iterable[int]) -> None:
    """Close every fd of this process but those in `keep` (close_range(2) in stretches)."""
    low = 0
    for fd in sorted(set(keep)):
        if fd > low:  # closerange(n, n) would close everything from n on (close_range(n, ~0))
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)

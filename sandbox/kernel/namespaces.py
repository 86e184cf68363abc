"""Namespaces and the pid-1 init of the run.

The supervisor unshares the pid namespace for its next child only (unshare(CLONE_NEWPID)
does not move the caller), so the process it forks is PID 1 of a fresh namespace. That
process unshares the rest for itself, sets everything up, forks the workload and stays as
its init: it reaps orphans, and when the workload ends it exits, and the kernel kills every
process left in the namespace. Killing it from outside therefore ends the whole run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import signal
import socket
import struct

from stockade.errors import UnsupportedError
from stockade.kernel import syscalls as sc

# Everything but the pid namespace, which the supervisor makes for the child.
CHILD_NAMESPACES = (
    sc.CLONE_NEWNS | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS | sc.CLONE_NEWNET | sc.CLONE_NEWCGROUP
)


def enter_user_namespace(
    inner_uid: int, inner_gid: int, subordinate: tuple[int, int] | None = None
) -> None:
    """Rootless mode: move this process into a new user namespace where the caller's own
    uid and gid appear as `inner_uid`/`inner_gid`, with every capability *inside* it (and
    none outside), so the namespaces, mounts and the rest of setup work as for root.

    With `subordinate` (a uid and a gid of the caller's /etc/subuid and /etc/subgid ranges),
    the caller is root inside instead, and `inner_uid`/`inner_gid` are those host ids: the
    workload is then a host user of its own (kernel/uids.py). Only newuidmap and newgidmap,
    setuid tools run from outside the namespace, may write such a map."""
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    if subordinate is not None:
        _unshare_mapped_by_tools(
            (f"0 {outer_uid} 1 {inner_uid} {subordinate[0]} 1").split(),
            (f"0 {outer_gid} 1 {inner_gid} {subordinate[1]} 1").split(),
        )
        return
    sc.unshare(sc.CLONE_NEWUSER)
    # An unprivileged process may map only its own ids, and only once setgroups is denied.
    _write_proc("/proc/self/setgroups", "deny")
    _write_proc("/proc/self/uid_map", f"{inner_uid} {outer_uid} 1")
    _write_proc("/proc/self/gid_map", f"{inner_gid} {outer_gid} 1")


def _unshare_mapped_by_tools(uid_map: list[str], gid_map: list[str]) -> None:
    """unshare(CLONE_NEWUSER), with the maps written by newuidmap and newgidmap from a helper
    forked before it (a child forked after would be inside, where their setuid bit is void)."""
    from stockade.kernel import uids

    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    helper = os.fork()
    if helper == 0:  # single-threaded (the supervisor), so this fork is safe
        code = 1
        try:
            os.close(go_w)
            if os.read(go_r, 1):
                target = str(os.getppid())
                tools = zip(uids.MAPPERS, (uid_map, gid_map), strict=True)
                code = 0 if all(_run(uids.mapper(t) or t, [t, target, *m]) for t, m in tools) else 1
        finally:
            os._exit(code)
    os.close(go_r)
    try:
        sc.unshare(sc.CLONE_NEWUSER)
        os.write(go_w, b"1")
    finally:
        os.close(go_w)  # without the byte: the helper maps nothing and exits
        _, status = os.waitpid(helper, 0)
    if status != 0:
        raise PermissionError(
            errno.EPERM,
            "newuidmap or newgidmap refused to map the subordinate ids",
            " ".join(uid_map),
        )


def _run(path: str, argv: list[str]) -> bool:
    null = os.open("/dev/null", os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)]
        pid = os.posix_spawn(path, argv, {}, file_actions=actions)
    finally:
        os.close(null)
    return os.waitpid(pid, 0)[1] == 0


def _write_proc(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def in_user_namespace_without_setgroups() -> bool:
    try:
        with open("/proc/self/setgroups") as file:
            return file.read().strip() == "deny"
    except OSError:
        return False


USER_NAMESPACES_MISSING = "unprivileged user namespaces, which running without root needs"
_USERNS_SYSCTLS = (
    ("kernel/unprivileged_userns_clone", "0", "sysctl -w kernel.unprivileged_userns_clone=1"),
    ("user/max_user_namespaces", "0", "sysctl -w user.max_user_namespaces=15000"),
    (
        "kernel/apparmor_restrict_unprivileged_userns",
        "1",
        "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 23.10+), or an "
        "AppArmor profile for the interpreter that grants `userns,` "
        "(like /etc/apparmor.d/bwrap-userns-restrict)",
    ),
)


@functools.cache
def require_user_namespaces() -> None:
    """Raise UnsupportedError before a rootless run starts where a sysctl turns unprivileged
    user namespaces off. Only the sysctls that decide it alone are read (cheap, no fork):
    under AppArmor's restriction a profile may still grant them, and a container's seccomp
    profile shows only when the run tries, which then raises the same error."""
    for name, bad, _ in _USERNS_SYSCTLS[:2]:
        try:
            with open(f"/proc/sys/{name}") as file:
                if file.read().strip() == bad:
                    raise UnsupportedError(USER_NAMESPACES_MISSING, user_namespace_hint())
        except OSError:
            continue


def user_namespace_hint() -> str:
    """Why unprivileged user namespaces may be refused here, and what lifts it."""
    hints = []
    for name, bad, fix in _USERNS_SYSCTLS:
        try:
            with open(f"/proc/sys/{name}") as file:
                if file.read().strip() == bad:
                    hints.append(f"{name.replace('/', '.')} is {bad}: {fix}")
        except OSError:
            continue
    if not hints:
        return "no sysctl explains it: a container's seccomp profile or LSM may forbid unshare"
    return "; ".join(hints)


def unshare_pid_for_children() -> None:
    sc.unshare(sc.CLONE_NEWPID)


def unshare_child_namespaces() -> None:
    sc.unshare(CHILD_NAMESPACES)


def join_new_session_keyring() -> None:
    """Keyrings are not namespaced: give the run an anonymous session keyring of its own."""
    sc.keyctl_join_session_keyring()


def run_init(workload: int) -> int:
    """Reap every child until the workload exits; return its wait status."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # cannot happen while the workload lives
            return 0
        if pid == workload:
            return status


def end_all() -> None:
    """PID 1's end of a run: SIGKILL every other process of the pid namespace (kill(-1) spares
    only the caller) and reap until none is left, forks racing with it included."""
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        try:
            os.wait()
        except ChildProcessError:
            return


def enter_network(netns: int | None) -> None:
    """The init's step: join the run's namespace that the supervisor made (allowlist), or
    bring up lo of the fresh one the init unshared (no network)."""
    if netns is None:
        loopback_up()
        return
    sc.setns(netns, sc.CLONE_NEWNET)
    os.close(netns)


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """Bring `lo` up in the current (fresh) network namespace, so the workload's own
    127.0.0.1 works; nothing else exists to reach."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))

"""Dropping privileges: uid/gid, supplementary groups, every capability, no_new_privs."""

from __future__ import annotations

import ctypes
import os

from stockade.kernel import syscalls as sc


def _last_capability() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as file:
        return int(file.read())


def drop_privileges(uid: int, gid: int, rootless: bool = False) -> None:
    """Become uid/gid with no capability in any set, the bounding set empty, no_new_privs."""
    # The bounding set needs CAP_SETPCAP to shrink, so it goes first, while we still have it.
    for capability in range(_last_capability() + 1):
        sc.prctl(sc.PR_CAPBSET_DROP, capability)
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    try:
        os.setgroups([])
    except PermissionError:
        # Only in a user namespace whose gid map newgidmap did not write (/proc/self/setgroups
        # is "deny"): the caller's own groups stay, as the run's warnings say.
        if not rootless:
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    # setresuid empties the permitted and effective sets but keeps the inheritable one.
    sc.capset_empty()
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)


def scrub_inherited_environ() -> None:
    """Zero the argument and environment blocks this process inherited from its caller.

    The init is a fork of the caller (or of the spawn server), and /proc/1/cmdline and
    /proc/1/environ show those blocks of its address space: the caller's command line and
    variables. environ is unreadable to the workload anyway (the init is not dumpable), but
    cmdline is readable by anyone who sees the pid; we keep nothing of the caller's in either.
    """
    with open("/proc/self/stat", "rb") as file:
        # Fields after the command name, which may itself hold spaces and parentheses.
        fields = file.read().rsplit(b")", 1)[1].split()
    # proc(5) fields 48-51: arg_start, arg_end, env_start, env_end.
    arg_start, arg_end, env_start, env_end = (int(f) for f in fields[45:49])
    for start, end in ((arg_start, arg_end), (env_start, env_end)):
        if end > start:
            ctypes.memset(start, 0, end - start)

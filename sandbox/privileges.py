"""Dropping privileges: uid/gid, supplementary groups, every capability, no_new_privs."""

from __future__ import annotations

import ctypes
import os

from . import _syscalls as sc


def _last_capability() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as file:
        return int(file.read())


def drop_privileges(uid: int, gid: int, rootless: bool = False) -> None:
    """Become uid/gid with no capability in any set, the bounding set empty, no_new_privs."""
    # The bounding set needs CAP_SETPCAP to shrink, so it goes first, while we still have it.
    for capability in range(_last_capability() + 1):
        sc.prctl(sc.PR_CAPBSET_DROP, capability)
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    if not rootless:
        os.setgroups([])  # in rootless mode the kernel refuses it, and there is nothing to drop
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    # setresuid empties the permitted and effective sets but keeps the inheritable one.
    sc.capset_empty()
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)


def scrub_inherited_environ() -> None:
    """Zero the environment block this process inherited from the supervisor.

    The init is a fork of the supervisor, and /proc/1/environ shows the block its address
    space still holds: the host's variables. The workload cannot read it anyway (the init is
    not dumpable after setresuid), but we keep no secret there to begin with.
    """
    with open("/proc/self/stat", "rb") as file:
        # Fields after the command name, which may itself hold spaces and parentheses.
        fields = file.read().rsplit(b")", 1)[1].split()
    env_start, env_end = int(fields[47]), int(fields[48])  # fields 50 and 51 of proc(5)
    if env_end > env_start:
        ctypes.memset(env_start, 0, env_end - env_start)

"""Namespaces and the pid-1 init of the run.

The supervisor unshares the pid namespace for its next child only (unshare(CLONE_NEWPID)
does not move the caller), so the process it forks is PID 1 of a fresh namespace. That
process unshares the rest for itself, sets everything up, forks the workload and stays as
its init: it reaps orphans, and when the workload ends it exits, and the kernel kills every
process left in the namespace. Killing it from outside therefore ends the whole run.
"""

from __future__ import annotations

import os

from . import _syscalls as sc

# Everything but the pid namespace, which the supervisor makes for the child.
CHILD_NAMESPACES = (
    sc.CLONE_NEWNS | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS | sc.CLONE_NEWNET | sc.CLONE_NEWCGROUP
)


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

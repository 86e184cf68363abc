"""How to give a user cgroup limits: the exact commands for this machine's layout, which
`sandbox doctor` prints when a run cannot have its cgroup as this user (pure: planned from
what `control` found; docs/rootless.md explains each way).
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
from typing import NamedTuple

from stockade.kernel.cgroups.layout import LEAF, CgroupSupport

V2_DELEGATED_FILES = ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads")


class Machine(NamedTuple):
    """What decides the way: the user, and whether systemd and their user manager are there."""

    user: str
    uid: int
    gid: int
    systemd: bool  # systemd is PID 1 (/run/systemd/system)
    user_manager: bool  # the user's systemd manager runs (its private socket is there)


def commands(version: int | None, as_root: CgroupSupport, v2_mount: str | None,
             machine: Machine) -> tuple[str, ...]:  # fmt: skip
    """Lines to print: `# ...` says who runs what and why, the others are the commands."""
    if version == 1:
        return _v1(as_root, machine)
    if version == 2 and machine.systemd:
        return _v2_systemd(machine)
    if version == 2 and v2_mount:
        return _v2_by_hand(v2_mount, machine)
    return ()


def _v1(as_root: CgroupSupport, machine: Machine) -> tuple[str, ...]:
    dirs = " ".join(sorted(set(as_root.paths.values())))
    if not dirs:
        return ()
    return (
        f"# as root: a `stockade` cgroup owned by {machine.user} in each controller's hierarchy",
        f"mkdir -p {dirs}",
        f"chown {machine.uid}:{machine.gid} {dirs}",
    )


def _v2_systemd(machine: Machine) -> tuple[str, ...]:
    if machine.user_manager:  # it runs, but did not answer on the user bus
        first = (
            "# as root: a user bus, for Stockade to reach your systemd user manager (it then "
            "asks for a delegated scope itself); Debian and Ubuntu:",
            "apt-get install dbus-user-session",
        )
    else:
        first = (
            f"# as root: a systemd user manager for {machine.user}, also when not logged in "
            "(Stockade then asks it for a delegated scope itself):",
            f"loginctl enable-linger {machine.user}",
        )
    return (
        *first,
        "# or run each command in a delegated scope yourself:",
        "systemd-run --user --scope -p Delegate=yes -- sandbox run ...",
        "# or, in the [Service] section of a systemd service that runs sandboxes:",
        "Delegate=yes",
    )


def _v2_by_hand(mount: str, machine: Machine) -> tuple[str, ...]:
    cgroup = f"{mount}/stockade-{machine.user}"
    files = " ".join(f"{cgroup}/{name}" for name in V2_DELEGATED_FILES)
    return (
        f"# as root (no systemd here): a cgroup v2 subtree delegated to {machine.user}",
        f"mkdir {cgroup}",
        f"chown {machine.uid}:{machine.gid} {cgroup} {files}",
        f"echo '+memory +pids' > {mount}/cgroup.subtree_control",
        f"# then, as root, for each shell of {machine.user} that runs sandboxes (after a run, "
        f"into {cgroup}/{LEAF}, where Stockade moved the processes):",
        f"echo <the shell's pid> > {cgroup}/cgroup.procs",
    )

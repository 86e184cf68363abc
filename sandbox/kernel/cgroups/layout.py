"""Where run cgroups go: parse /proc/self/cgroup and /proc/self/mountinfo and plan the layout.

The pure half of the cgroup code (`base`, `v1`, `v2` and `control` make the system calls): it reads
only the texts it is given, so the unit tests cover every layout from recorded texts.

- v2 (most machines): `<mount>/<our own cgroup>/stockade/<run>`, as root or in a subtree
  delegated to us, so the limits our own caller is under (a service's MemoryMax, a CI job's,
  a container's) still apply to the run. Our own cgroup holds our processes, and a cgroup
  with processes may not give controllers to children ("no internal processes"; only the
  root cgroup is exempt): `v2` moves them into the leaf `stockade-supervisor` beside
  `stockade`.
  Without root and with nothing delegated, a transient systemd scope that Stockade asks
  the user manager for is such a subtree (`scope`).
- v1 (legacy and hybrid layouts): `<controller mount>/<our own cgroup>/stockade/<run>` in each
  hierarchy, for the same reason.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import os
import posixpath
import re
from collections.abc import Callable
from typing import NamedTuple

from stockade.kernel.mounts import unescape

PARENT = "stockade"
CONTROLLERS = ("memory", "pids", "cpu")  # "cpu" means CPU-time accounting, not throttling
V1_SUBSYSTEM = {"memory": "memory", "pids": "pids", "cpu": "cpuacct"}
DELEGATION_HINT = (
    "without root, cgroup v2 needs a subtree delegated to you: run under "
    "`systemd-run --user --scope -p Delegate=yes -- sandbox ...` (or a service with "
    "Delegate=yes); on cgroup v1, root must make a `stockade` directory owned by you in each "
    'controller\'s hierarchy; or set `cgroups = "best_effort"` in the policy to run on '
    "rlimits alone"
)
# In a delegated v2 cgroup we hold processes ourselves; they move into this leaf so the
# cgroup may enable controllers for its children ("no internal processes").
LEAF = "stockade-supervisor"
_RUN_NAME = re.compile(r"(\d+)-[\w.-]+")  # "<supervisor pid>-<counter>"


class CgroupSupport(NamedTuple):
    """What this machine offers, for `create` and for `sandbox doctor`."""

    version: int | None  # 1, 2, or None when no usable cgroup filesystem is mounted
    controllers: dict[str, bool]  # memory, pids, cpu (accounting)
    paths: dict[str, str]  # controller -> the `stockade` directory its run cgroups go under
    reasons: dict[str, str]  # controller -> why it is missing
    mount: str = ""  # v2: the cgroup2 mount point (the top of what we may walk)
    # Set when no subtree is delegated but the systemd user manager on this bus answers: the
    # processes that start runs ask it for a scope of their own first (control.enter_scope).
    scope_bus: str | None = None


class CgroupMount(NamedTuple):
    mount_point: str
    root: str  # the part of the hierarchy this mount shows
    version: int
    options: frozenset[str]  # v1: super options, which name the controllers


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """`id:controllers:path` lines -> {controller: path}; the v2 line `0::/p` is keyed ""."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                own[controller] = parts[2]
    return own


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts, in mount order."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(tail[2].split(",")) if len(tail) > 2 else frozenset()
        version = 2 if tail[0] == "cgroup2" else 1
        mounts.append(CgroupMount(unescape(fields[4]), unescape(fields[3]), version, options))
    return mounts


def cgroup_dir(mount: CgroupMount, own_path: str) -> str | None:
    """Where our cgroup `own_path` appears under `mount`; None if the mount does not show it."""
    if ".." in own_path.split("/"):  # outside our cgroup namespace's root
        return None
    rel = posixpath.relpath(own_path, mount.root)
    if rel == ".." or rel.startswith("../"):
        return None
    return posixpath.normpath(posixpath.join(mount.mount_point, rel))


def plan_support(
    own: dict[str, str],
    mounts: list[CgroupMount],
    v2_controllers: frozenset[str],
    is_root: bool,
    writable: Callable[[str], bool] = lambda path: os.access(path, os.W_OK),
) -> CgroupSupport:
    """Pick the layout: v1 if memory or pids sits on a v1 hierarchy (legacy, hybrid), else v2.

    `v2_controllers` is the content of the v2 mount's cgroup.controllers.
    """
    v1 = {m for m in mounts if m.version == 1}
    v2 = [m for m in mounts if m.version == 2]
    on_v1 = {c for c in CONTROLLERS if any(V1_SUBSYSTEM[c] in m.options for m in v1)}
    if on_v1 & {"memory", "pids"} or (on_v1 and not v2):
        return _plan_v1(own, mounts, is_root, writable)
    if v2:
        own_dir = _own_v2(v2[-1], own.get("", "/"))
        if is_root:  # not visible from here (moved out of our cgroup namespace): the top
            return _plan_v2(v2[-1], v2_controllers, own_dir or v2[-1].mount_point)
        return _plan_v2(v2[-1], v2_controllers, _delegated_v2(own_dir, writable))
    return unsupported("no cgroup filesystem is mounted (mount cgroup2 on /sys/fs/cgroup)")


def unsupported(reason: str) -> CgroupSupport:
    return CgroupSupport(
        None, dict.fromkeys(CONTROLLERS, False), {}, dict.fromkeys(CONTROLLERS, reason)
    )


def _plan_v1(
    own: dict[str, str], mounts: list[CgroupMount], is_root: bool, writable: Callable[[str], bool]
) -> CgroupSupport:
    paths, reasons = {}, {}
    for controller in CONTROLLERS:
        subsystem = V1_SUBSYSTEM[controller]
        found = [m for m in mounts if m.version == 1 and subsystem in m.options]
        dirs = [d for m in found if (d := cgroup_dir(m, own.get(subsystem, "/"))) is not None]
        parent = posixpath.join(dirs[-1], PARENT) if dirs else None  # the last mount wins
        # Without root, a run may make its cgroup only in a `stockade` directory root made
        # ours (or where we may make one): known here, not when the first run fails.
        if parent and not is_root and not (writable(parent) or writable(dirs[-1])):
            reasons[controller] = DELEGATION_HINT
        elif parent:
            paths[controller] = parent
        elif found:
            reasons[controller] = (
                f"cgroup v1 {subsystem} is mounted, but not the part holding our cgroup "
                f"{own.get(subsystem, '?')!r}"
            )
        else:
            reasons[controller] = f"cgroup v1 {subsystem} controller is not mounted"
    available = {c: c in paths for c in CONTROLLERS}
    return CgroupSupport(1, available, paths, reasons)


def _own_v2(mount: CgroupMount, own_path: str) -> str | None:
    """Our own v2 cgroup's directory: the one our leaf is in, once we moved into it."""
    base = cgroup_dir(mount, own_path)
    if base is not None and posixpath.basename(base) == LEAF:
        base = posixpath.dirname(base)
    return base


def _delegated_v2(base: str | None, writable: Callable[[str], bool]) -> str | None:
    """Our own v2 cgroup, if it was delegated to us (we may write its control files)."""
    files = ("cgroup.procs", "cgroup.subtree_control")
    if base is None or not all(writable(posixpath.join(base, f)) for f in files):
        return None
    return base


def _plan_v2(mount: CgroupMount, enabled: frozenset[str], base: str | None) -> CgroupSupport:
    """`base`: our own cgroup, where `stockade` goes (None: not ours to use, without root).
    `enabled`: the root's cgroup.controllers; as root, `v2` enables what is missing between
    the root and `base`."""
    parent = posixpath.join(base or mount.mount_point, PARENT)
    paths, reasons = {}, {}
    for controller in CONTROLLERS:
        # cpu.stat (usage_usec) is a core file of every v2 cgroup: no controller needed.
        if controller != "cpu" and controller not in enabled:
            reasons[controller] = (
                f"cgroup v2 {controller} controller is not in {mount.mount_point}/"
                "cgroup.controllers (bound to a v1 hierarchy, or disabled at boot)"
            )
        elif base is None:
            reasons[controller] = DELEGATION_HINT
        else:
            paths[controller] = parent
    available = {c: c in paths for c in CONTROLLERS}
    return CgroupSupport(2, available, paths, reasons, mount=mount.mount_point)


def scope_wanted(support: CgroupSupport, is_root: bool) -> bool:
    """Would a transient systemd scope help: cgroup v2, not root, nothing delegated to us?"""
    return support.version == 2 and not is_root and not support.paths


def plan_scope(delegatable: frozenset[str], bus: str) -> CgroupSupport:
    """What a transient scope with Delegate=yes will offer: the controllers its user manager
    was delegated (its cgroup.controllers), in a cgroup known only once the scope is made."""
    reasons = {
        c: f"the systemd user manager was not delegated the {c} controller (Delegate= of "
        "user@.service)"
        for c in ("memory", "pids")
        if c not in delegatable
    }
    return CgroupSupport(2, {c: c not in reasons for c in CONTROLLERS}, {}, reasons, scope_bus=bus)


def refused_scope(support: CgroupSupport, why: str) -> CgroupSupport:
    """`support`, each reason saying also why Stockade could not get a scope itself."""
    reasons = {
        c: f"{reason}; no automatic scope either: {why}" for c, reason in support.reasons.items()
    }
    return support._replace(reasons=reasons)


def keyed(text: str) -> dict[str, int]:
    """`key value` lines (cpu.stat, memory.events, memory.oom_control) -> {key: value}."""
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


def run_dirs(support: CgroupSupport, name: str) -> dict[str, str]:
    """controller -> the run's directory; co-mounted v1 controllers (and all of v2) share one."""
    return {c: posixpath.join(parent, name) for c, parent in support.paths.items()}


def supervisor_pid(name: str) -> int | None:
    """The supervisor pid a run cgroup's name embeds; None for names that are not ours."""
    match = _RUN_NAME.fullmatch(name)
    return int(match.group(1)) if match else None

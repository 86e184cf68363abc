"""What this machine supports: each protection, available or not, and why.

Every namespace and pivot_root are probed for real in a forked child (a sysctl can say yes
while a container's seccomp profile says no). Exit code 0 when everything the default
policy needs is there, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import pwd
import tempfile
from collections.abc import Callable
from typing import NamedTuple

from stockade.errors import SandboxError
from stockade.kernel import mounts, namespaces, seccomp, uids
from stockade.kernel import syscalls as sc
from stockade.kernel.cgroups import control as cgroups
from stockade.kernel.cgroups import delegation, v2
from stockade.kernel.cgroups.base import CgroupLimits
from stockade.kernel.cgroups.layout import LEAF, CgroupSupport
from stockade.net import namespace as net


class Check(NamedTuple):
    name: str
    available: bool
    detail: str
    required: bool = True  # does the default policy need it?
    fix: tuple[str, ...] = ()  # how to get it: `# who and why` lines, then commands


NAMESPACES = {
    "mount": sc.CLONE_NEWNS,
    "pid": sc.CLONE_NEWPID,
    "ipc": sc.CLONE_NEWIPC,
    "uts": sc.CLONE_NEWUTS,
    "net": sc.CLONE_NEWNET,
    "cgroup": sc.CLONE_NEWCGROUP,
}


def probe(action: Callable[[], None], *, user_namespace: bool = True) -> tuple[bool, str]:
    """Run `action` in a forked child, in a user namespace of its own when not root (as a
    run would be); (True, "works") or (False, the error)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            if user_namespace and os.geteuid() != 0 and action is not _new_user_namespace:
                _new_user_namespace()
            action()
            os._exit(0)
        except (OSError, SandboxError) as exc:
            os.write(write_end, str(exc).encode()[:500])
        finally:
            os._exit(1)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        message = reader.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return (True, "works") if os.waitstatus_to_exitcode(status) == 0 else (False, message)


def _in_a_new_root(action: Callable[[str], None]) -> tuple[bool, str]:
    """Probe `action(root)`: a tmpfs on an empty temp dir, in a mount namespace of its own,
    with the temp dir itself as the working directory (as a run's init has it)."""
    root = tempfile.mkdtemp(prefix="stockade-doctor-")

    def new_root() -> None:
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        os.chdir(root)
        sc.mount("tmpfs", root, "tmpfs", 0, "size=64k")
        action(root)

    try:
        return probe(new_root)
    finally:
        os.rmdir(root)


def _pivot_into(root: str) -> None:
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)


def _runtime_of_usr(root: str) -> None:
    """/usr as a run shows it: an overlay, or one per part around the mounts below it."""
    for mount in mounts.plan_runtime(("/usr",)):
        mounts.apply(root, mount)


def _overlayfs() -> tuple[bool, str]:
    works, detail = _in_a_new_root(_runtime_of_usr)
    inside = mounts.below("/usr", mounts.own_mount_points())
    if inside and works:
        detail = (
            f"works; mounts below /usr ({', '.join(inside)}): /usr is shown in parts around "
            "them, each by an overlay of its own"
        )
    return works, detail


def _new_user_namespace() -> None:
    namespaces.enter_user_namespace(os.geteuid(), os.getegid())


def _user_namespace() -> tuple[bool, str]:
    ok, detail = probe(_new_user_namespace)
    return (ok, detail) if ok else (False, f"{detail}; {namespaces.user_namespace_hint()}")


def _own_uids(rootless: bool) -> tuple[bool, str]:
    """Whether each sandbox gets a uid of its own (kernel/uids.py), and what is shared if not."""
    if not rootless:
        return True, "each sandbox takes a uid of its own from process.uid_range (root)"
    ranges = uids.own_subordinate()
    if ranges is None:
        return False, (
            "no newuidmap/newgidmap or no range of yours in /etc/subuid and /etc/subgid: every "
            "sandbox runs as your uid and shares the kernel's per-user counts "
            f"({uids.SHARED_COUNTS})"
        )
    (first, last), _ = ranges
    return True, f"each sandbox takes a uid of its own from your /etc/subuid range {first}-{last}"


def _make_a_run_cgroup() -> None:
    cgroups.create(f"{os.getpid()}-doctor", CgroupLimits(64 << 20, 16)).remove()


def _cgroup_for_a_run() -> tuple[bool, str]:
    """Make (and remove) a real run cgroup with memory and pids limits, as this user: in a
    transient systemd scope of a child's own where runs would be in one."""
    made = "a run cgroup with memory and pids limits can be made as this user"
    bus = cgroups.for_runs().scope_bus
    if bus is None:
        try:
            _make_a_run_cgroup()
        except SandboxError as exc:
            return False, str(exc)
        return True, made

    def in_a_scope() -> None:
        cgroups.enter_scope(bus)
        _make_a_run_cgroup()

    works, detail = probe(in_a_scope, user_namespace=False)
    return works, f"{made}, in a transient systemd scope (automatic)" if works else detail


def _cgroup_checks() -> list[Check]:
    support = cgroups.for_runs()
    found = [
        Check(
            "cgroup.version",
            support.version is not None,
            f"v{support.version}" if support.version else "no cgroup hierarchy found",
        )
    ]
    for controller, available in support.controllers.items():
        if available and support.scope_bus:
            detail = (
                "available: in a transient scope with Delegate=yes that Stockade asks the "
                f"systemd user manager for (at {support.scope_bus})"
            )
        elif available:
            detail = f"available: run cgroups go under {support.paths.get(controller)}"
        else:
            detail = support.reasons.get(controller, "unavailable")
        found.append(Check(f"cgroup.{controller}", available, detail))
    if support.version == 2 and support.paths:
        found.append(Check("cgroup.nesting", True, _nesting(support), required=False))
    works, detail = _cgroup_for_a_run()
    fix = () if works else _how_to_delegate(support.version)
    found.append(Check("cgroup.create", works, detail, fix=fix))
    return found


def _how_to_delegate(version: int | None) -> tuple[str, ...]:
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    machine = delegation.Machine(
        user,
        uid,
        gid,
        systemd=os.path.isdir("/run/systemd/system"),
        user_manager=os.path.exists(f"/run/user/{uid}/systemd/private"),
    )
    return delegation.commands(version, cgroups.as_root(), cgroups.v2_mount(), machine)


def checks() -> list[Check]:
    found = [
        Check(f"namespace.{name}", *probe(lambda f=flag: sc.unshare(f)))
        for name, flag in NAMESPACES.items()
    ]
    rootless = os.geteuid() != 0
    mode = "rootless (user namespaces)" if rootless else "root"
    found.insert(0, Check("user", True, f"uid {os.getuid()}: {mode}", required=False))
    found.append(Check("namespace.user", *_user_namespace(), required=rootless))
    found.append(Check("uids", *_own_uids(rootless), required=False))
    found.append(Check("pivot_root", *_in_a_new_root(_pivot_into)))
    # The runtime is shown through overlays (their file locks are each run's own).
    found.append(Check("overlayfs", *_overlayfs()))
    found.append(Check("seccomp", *seccomp.detect()))
    found.append(Check("net.allowlist", *net.detect(), required=False))
    found.append(Check("core_dumps", *_core_dumps(), required=False))
    found += _cgroup_checks()
    return found


def _core_dumps() -> tuple[bool, str]:
    """Runs have RLIMIT_CORE=0, which stops a core file, not a core_pattern that pipes to a
    program: for a pipe the kernel lifts the limit and only tells the helper (%c), which runs
    as root on the host and may keep the crashed run's memory."""
    try:
        with open("/proc/sys/kernel/core_pattern") as found:
            pattern = found.read().strip()
    except OSError as error:
        return False, f"cannot read /proc/sys/kernel/core_pattern: {error.strerror}"
    if not pattern.startswith("|"):
        return True, "a crashing run writes no core file (RLIMIT_CORE=0)"
    helper = pattern[1:].split(maxsplit=1)[0] if pattern[1:].strip() else "a program"
    return False, (
        f"core_pattern pipes every crash dump to {helper}, as root on the host: a crashing "
        "run's memory reaches it, RLIMIT_CORE=0 or not (the helper is told the limit and may "
        "honour it; systemd-coredump does); to keep runs' memory on the host off disk, set "
        "kernel.core_pattern to a file name"
    )


def _nesting(support: CgroupSupport) -> str:
    """Where v2 runs go relative to this process's own cgroup, and what that moves."""
    base = os.path.dirname(support.paths["cpu"])
    if v2.is_root_cgroup(base):
        return (
            "runs go under the root cgroup (this process is in it): no caller's limits above "
            "them; controllers turned on there for them go off after the last run"
        )
    nested = (
        f"runs nest under this process's cgroup {base}, so its limits cover them; its "
        f"processes move into {base}/{LEAF} at the first run (a cgroup that holds "
        "processes cannot give controllers to children)"
    )
    if base.endswith(".service") and not _delegated(base):
        nested += (
            "; a systemd service: give it Delegate=yes, else systemd stops it whenever the "
            "OOM killer ends one of its runs (OOMPolicy=stop) and may undo its changes"
        )
    return nested


def _delegated(cgroup: str) -> bool:
    """systemd (>= 251) marks the cgroup of a unit with Delegate=yes."""
    try:
        return os.getxattr(cgroup, "trusted.delegate") == b"1"
    except OSError:
        return False


def main(*, json_output: bool = False) -> int:
    found = checks()
    healthy = all(check.available for check in found if check.required)
    if json_output:
        print(json.dumps({"ok": healthy, "checks": [c._asdict() for c in found]}, indent=2))
    else:
        for check in found:
            mark = "ok " if check.available else ("MISSING" if check.required else "no ")
            print(f"{mark:<8}{check.name:<20}{check.detail}")
            for line in check.fix:
                print(f"{'':<8}  {line}")
        print(
            "everything the default policy needs is here"
            if healthy
            else "the default policy cannot run here: see MISSING above"
        )
    return 0 if healthy else 1

"""The only code that runs between fork and execve: the setup checklist, in order.

Rules for this file: single-threaded, no logging, no locks; each step is one call into its
concern's module; a failing step reports `(step, errno)` to the supervisor through the
close-on-exec report pipe and exits 125. Read it top to bottom against DESIGN.md.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, NoReturn

from stockade.kernel import limits, mounts, namespaces, privileges, seccomp
from stockade.kernel import syscalls as sc
from stockade.spawn import call as calls
from stockade.spawn import collect
from stockade.spawn.plan import RunPlan

SETUP_FAILED = 125


def report(fd: int, **message: Any) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


class _Checklist:
    def __init__(self, report_fd: int) -> None:
        self.report_fd = report_fd

    def __call__(self, name: str, action: Callable[..., Any], *args: Any) -> Any:
        try:
            return action(*args)
        except OSError as exc:
            report(self.report_fd, kind="setup", step=name, errno=exc.errno or 0, detail=str(exc))
            os._exit(SETUP_FAILED)


def run_init(
    plan: RunPlan,
    root: str,
    join_paths: tuple[str, ...],
    stdio: tuple[int, ...] | None,
    report_fd: int,
    netns: int | None = None,
    call_fd: int | None = None,
) -> NoReturn:
    """PID 1 of the run: set everything up, fork the workload, reap, report its status.
    `netns` is the run's network namespace when the supervisor made one (an allowlist).
    A prepared run (prepared.py) has no `stdio` yet: it gets the call's command, files and
    stdio on `call_fd` once it is set up."""
    try:
        step = _Checklist(report_fd)
        # Steps 1-3 (supervisor, fork, new pid namespace) are done; this process is PID 1.
        step("session.setsid", os.setsid)
        step("signals.default", _default_handlers)
        step("prctl.pdeathsig", sc.prctl, sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        step("privileges.scrub_environ", privileges.scrub_inherited_environ)
        # The cgroup namespace takes the caller's cgroup as its root, so be in the run's
        # first: born there (v2, clone3 into the cgroup: nothing to join), or joined now.
        if join_paths:
            step("cgroups.join", _join_cgroup, join_paths)
        step("namespaces.unshare", namespaces.unshare_child_namespaces)
        step("namespaces.keyring", namespaces.join_new_session_keyring)
        # join the supervisor's network namespace, or bring lo up in our own
        step("net.enter", namespaces.enter_network, netns)
        # 4. mounts
        step("mounts.build_root", mounts.build_root, root, plan.root)
        step("mounts.pivot_root", mounts.pivot_root, root)
        # 5. hostname, rlimits (the cgroup was joined above)
        step("uts.sethostname", socket.sethostname, plan.hostname)
        step("limits.rlimits", limits.apply_rlimits, plan.rlimits)
        # 6. privileges
        step(
            "privileges.drop",
            privileges.drop_privileges,
            plan.root.uid,
            plan.root.gid,
            plan.rootless,
        )
        # Changing credentials clears the parent-death signal (prctl(2)): set it again, or a
        # SIGKILLed supervisor would leave the run going with nobody to end it.
        step("prctl.pdeathsig", sc.prctl, sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        # The init shares the workload's uid: without this, the workload could write into
        # the init's memory through /proc/1/mem and run code outside the seccomp filter.
        step("privileges.not_dumpable", sc.prctl, sc.PR_SET_DUMPABLE, 0)
        # 7. file descriptors: only the report pipe, the call channel and the stdio given
        step("fds.close", sc.close_fds_except, (report_fd, call_fd or report_fd, *(stdio or ())))
        step("workspace.chdir", os.chdir, "/workspace")  # the workload starts here
        # 8. The filter: everything above needs syscalls it refuses. The init loads it too,
        # and the workload inherits it; what remains (files, fds, spawn, wait4) is allowed.
        step("seccomp.load", seccomp.load_filters, plan.seccomp)
        # Everything above is the same for every call of a Sandbox: a prepared run waits here,
        # confined, for its call (prepared.py).
        arrived = None
        if call_fd is not None:
            plan, stdio = step("call.receive", _receive_call, plan, call_fd)
            arrived = time.monotonic()  # the run's time starts now
        assert stdio is not None
        # 9. The call: its files, written as the workload's own user; its stdio.
        files, uid, gid = plan.files, plan.root.uid, plan.root.gid
        step("mounts.workspace_files", mounts.write_workspace, "", files, uid, gid)
        step("fds.stdio", _install_stdio, stdio, report_fd)
        workload = _spawn_workload(plan, report_fd)
        if arrived is not None:  # told after the spawn: waking the supervisor must not delay it
            report(report_fd, kind="call", at=arrived)
        status = namespaces.run_init(workload)
        if plan.collect is not None:
            # The files come out once nothing of the run is left to change them meanwhile.
            step("processes.end", namespaces.end_all)
            step("workspace.collect", _send_files, plan.collect, plan.collect_size, report_fd)
        report(report_fd, kind="exit", status=status)
    finally:
        os._exit(SETUP_FAILED)


def _spawn_workload(plan: RunPlan, report_fd: int) -> int:
    """Start the workload: its own session (no controlling terminal: TIOCSTI has no
    target), default signal dispositions, an empty mask, the policy's environment.

    posix_spawn (vfork-like in glibc) rather than fork: no copy of this Python process's
    page tables, and no copy-on-write faults while it execs. Not posix_spawnp: it searches
    this process's own PATH, not the one the workload gets.
    """
    try:
        return os.posix_spawn(
            _find_command(plan.argv[0], plan.env["PATH"]), plan.argv, plan.env,
            setsid=True, setsigmask=(), setsigdef=_SIGNALS_TO_RESET,
        )  # fmt: skip
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.ENOMEM):  # no process could be made: setup failed
            report(report_fd, kind="setup", step="workload.spawn", errno=exc.errno, detail=str(exc))
            os._exit(SETUP_FAILED)
        report(report_fd, kind="exec", errno=exc.errno or 0, command=plan.argv[0])
        os._exit(127 if exc.errno == errno.ENOENT else 126)


def _find_command(name: str, search_path: str) -> str:
    """Where a shell finds `name` (in the new root, as the workload's user): the name itself
    when it holds a slash, else the first executable file of that name in `search_path`'s
    directories (an empty entry is the working directory). When only files that cannot be
    executed are found, the first of them, whose spawn then fails with EACCES (126); when
    none is, ENOENT (127)."""
    if "/" in name:
        return name
    denied = None
    for directory in search_path.split(":"):
        candidate = f"{directory or '.'}/{name}"
        if os.path.isfile(candidate):  # follows links; a directory is not a command
            if os.access(candidate, os.X_OK):
                return candidate
            denied = denied or candidate
    if denied is None:
        raise FileNotFoundError(errno.ENOENT, "command not found", name)
    return denied


# Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve.
_SIGNALS_TO_RESET = tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})


def _default_handlers() -> None:
    # PID 1 receives a signal from its own namespace only if it has a handler for it: with
    # none (Python's SIGINT, the supervisor's SIGTERM), the workload cannot end its init and
    # make its own run look like a setup failure.
    for number in signal.valid_signals():
        if callable(signal.getsignal(number)):
            signal.signal(number, signal.SIG_DFL)


def _receive_call(plan: RunPlan, call_fd: int) -> tuple[RunPlan, tuple[int, ...]]:
    call, stdio = calls.receive(call_fd)
    os.close(call_fd)
    changed = plan._replace(argv=call.argv, env=call.env, files=call.files, collect=call.collect)
    return changed, stdio


def _send_files(pattern: str, cap: int, report_fd: int) -> None:
    # Message by message: the init holds one chunk at a time, whatever the cap.
    for kind, name, value in collect.gather(pattern, cap):
        report(report_fd, kind=kind, name=name, value=value)


def _join_cgroup(join_paths: tuple[str, ...]) -> None:
    # Just forked, so of one thread: see kernel/cgroups/v1.py's CgroupV1 for why that matters.
    for path in join_paths:
        with open(path, "w") as joined:
            joined.write("0")


def _install_stdio(stdio: tuple[int, ...], report_fd: int) -> None:
    # stdin, stdout, stderr and, with host callbacks, the tool channel on 3 (report_fd is
    # above them: see supervisor.py). Move them above their targets first, so dup2 onto
    # 0..n never clobbers one not yet copied.
    count = len(stdio)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, count) if fd < count else fd for fd in stdio]
    for target, fd in enumerate(high):
        os.dup2(fd, target, inheritable=True)
    sc.close_fds_except((*range(count), report_fd))

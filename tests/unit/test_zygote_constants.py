"""The constants (and the collector) copied into the zygote, and into the workspace's guest,
equal their originals.

The zygote runs inside as `python3 -c SOURCE`, where the package is not visible, so it carries
its own copies of the host's values and of the kernel's and the standard library's numbers.
Importing it here runs only its definitions (its work is behind `__name__ == "__main__"`)."""

from __future__ import annotations

import fcntl
import inspect
import time

import pytest

from stockade.kernel import syscalls
from stockade.spawn import collect
from stockade.warm import host, session
from stockade.warm.guest import zygote
from stockade.workspace import workspace
from stockade.workspace.guest import agent


def test_the_protocol_constants_are_the_hosts() -> None:
    assert zygote.MESSAGE == host.MESSAGE
    assert zygote.IDLE_CPU_EXIT == session.IDLE_CPU_EXIT


def test_the_workspace_guest_constants_are_the_hosts() -> None:
    assert agent.MESSAGE == host.MESSAGE
    assert agent.IDLE_EXIT == workspace.IDLE_EXIT
    assert agent.PR_SET_DUMPABLE == syscalls.PR_SET_DUMPABLE
    assert agent.PR_SET_CHILD_SUBREAPER == zygote.PR_SET_CHILD_SUBREAPER == 36  # prctl.h


def test_the_kernel_numbers_are_the_hosts() -> None:
    assert zygote.PR_SET_DUMPABLE == syscalls.PR_SET_DUMPABLE
    assert zygote.PR_SET_SECCOMP == syscalls.PR_SET_SECCOMP
    assert zygote.SECCOMP_MODE_FILTER == syscalls.SECCOMP_MODE_FILTER


def test_the_standard_librarys_numbers_are_its_own() -> None:
    assert zygote.F_GETPIPE_SZ == fcntl.F_GETPIPE_SZ
    assert zygote._Interrupter.CLOCKS == (time.CLOCK_MONOTONIC, time.CLOCK_PROCESS_CPUTIME_ID)


@pytest.mark.parametrize("name", ["gather", "_listing", "_read", "_size"])
def test_the_collector_is_the_hosts(name: str) -> None:
    # A pooled run's files come out through the zygote's copy of the collector.
    assert inspect.getsource(getattr(zygote, name)) == inspect.getsource(getattr(collect, name))


def test_the_collectors_constants_are_the_hosts() -> None:
    assert zygote.CHUNK == collect.CHUNK
    assert zygote.WORKSPACE == collect.WORKSPACE
    assert zygote._NOT_READ == collect._NOT_READ

"""Rootless on systemd, out of the box: a user whose systemd user manager answers, with no
cgroup delegated, gets a transient scope with Delegate=yes that Stockade asks for over D-Bus
(kernel/cgroups/scope.py); it holds the spawn server, run cgroups go there, and the limits
hold. No user manager on the bus it asks: the refusal, with the hint.

Only where systemd is PID 1 on cgroup v2 (the VM job boots one: V2VM_INIT=systemd). The test
user's manager is started with `loginctl enable-linger`, as docs/rootless.md says.
"""

from __future__ import annotations

import glob
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from stockade.kernel.cgroups import control as cgroups
from tests.rootless.users import User, assert_limits_hold, json_of

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a test user"),
    pytest.mark.skipif(
        not os.path.isdir("/run/systemd/system"),
        reason="needs systemd as PID 1 with user managers (the VM job: V2VM_INIT=systemd)",
    ),
    pytest.mark.skipif(cgroups.detect().version != 2, reason="needs cgroup v2"),
]


def _eventually(condition: object, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def lingering(user: User) -> Iterator[User]:
    """The user, with a systemd user manager (and its user bus) running for them."""
    subprocess.run(["loginctl", "enable-linger", user.name], check=True)
    try:
        bus = f"/run/user/{user.uid}/bus"
        assert _eventually(lambda: os.path.exists(bus)), f"no user bus at {bus} (dbus-user-session)"
        yield user
    finally:
        subprocess.run(["loginctl", "disable-linger", user.name], check=True)
        subprocess.run(["loginctl", "terminate-user", user.name], check=False)
        service = f"user@{user.uid}.service"
        assert _eventually(
            lambda: subprocess.run(["systemctl", "is-active", "--quiet", service]).returncode
        ), f"{service} still runs"  # else the user cannot be removed


def _manager(user: User) -> str:
    return f"/sys/fs/cgroup/user.slice/user-{user.uid}.slice/user@{user.uid}.service"


def _scopes(user: User) -> list[str]:
    return glob.glob(f"{_manager(user)}/**/stockade-*.scope", recursive=True)


def test_runs_get_a_transient_delegated_scope_and_their_limits_hold(lingering: User) -> None:
    assert _scopes(lingering) == []
    assert_limits_hold(lingering)
    assert _eventually(lambda: _scopes(lingering) == []), "a scope outlived its processes"


def test_the_scope_holds_the_runs_and_is_delegated(lingering: User) -> None:
    """While a run sleeps, its cgroup is in a scope of the user manager's with Delegate=yes;
    once the command has ended, systemd has removed the scope."""
    command = lingering.command("-m", "stockade", "run", "--", "sleep", "20")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as running:
        try:
            runs: list[str] = []
            assert _eventually(lambda: runs.extend(_runs_in_scopes(lingering)) or runs)
            scope = runs[0].split("/stockade/")[0]
            assert scope.startswith(_manager(lingering) + "/")
            unit = os.path.basename(scope)
            shown = subprocess.run(
                ["systemctl", "--user", f"--machine={lingering.name}@", "show",
                 "--property=Delegate", unit],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            assert shown.strip() == "Delegate=yes"
        finally:
            running.kill()
            running.wait()
    assert _eventually(lambda: _scopes(lingering) == []), "a scope outlived its processes"


def _runs_in_scopes(user: User) -> list[str]:
    found = []
    for run in (path for scope in _scopes(user) for path in glob.glob(f"{scope}/stockade/*/")):
        with open(f"{run}cgroup.procs") as procs:
            if procs.read().split():
                found.append(run.rstrip("/"))
    return found


PREPARED_RUNS = """
from stockade import Sandbox
with Sandbox() as box:
    print([box.run(["sh", "-c", "cat f"], files={"f": str(n)}).stdout for n in range(3)])
"""


def test_prepared_runs_in_the_scope(lingering: User) -> None:
    done = lingering.python("-c", PREPARED_RUNS)
    assert (done.returncode, done.stdout.strip()) == (0, "['0', '1', '2']"), done.stderr


def test_doctor_says_the_scope_is_automatic(lingering: User) -> None:
    report = json_of(lingering.sandbox("doctor", "--json"))
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["cgroup.create"]["available"], checks["cgroup.create"]
    assert "transient systemd scope (automatic)" in checks["cgroup.create"]["detail"]
    assert "Delegate=yes" in checks["cgroup.memory"]["detail"]
    assert report["ok"]


def test_no_user_manager_on_the_bus_is_refused_with_the_hint(lingering: User) -> None:
    bus = "unix:path=/run/stockade-no-such-bus"
    done = lingering.sandbox("run", "--", "true", env=(f"DBUS_SESSION_BUS_ADDRESS={bus}",))
    assert done.returncode == 125, done
    assert f"no systemd user manager answers at {bus}" in done.stderr
    assert "Delegate=yes" in done.stderr

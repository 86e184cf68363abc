"""The pure half of rootless cgroups: when a transient systemd scope is asked for, what it
offers, and the commands `sandbox doctor` prints for each layout (kernel/cgroups/delegation).
"""

from __future__ import annotations

import pytest

from stockade.kernel.cgroups import delegation, scope
from stockade.kernel.cgroups import layout as cgroup_layout
from tests.unit.test_cgroups_parse import (
    V1_MOUNTS,
    V1_SELF,
    V2_CONTROLLERS,
    V2_MOUNTS,
    V2_SELF,
    plan,
)

ALICE = delegation.Machine("alice", 1000, 1000, systemd=True, user_manager=False)


def test_a_scope_is_wanted_only_on_v2_without_root_or_delegation() -> None:
    user_v2 = plan(V2_SELF, V2_MOUNTS, V2_CONTROLLERS, root=False)
    assert cgroup_layout.scope_wanted(user_v2, is_root=False)
    assert not cgroup_layout.scope_wanted(plan(V2_SELF, V2_MOUNTS, V2_CONTROLLERS), True)
    assert not cgroup_layout.scope_wanted(plan(V1_SELF, V1_MOUNTS, root=False), False)
    delegated = user_v2._replace(paths={"cpu": "/sys/fs/cgroup/x/stockade"})
    assert not cgroup_layout.scope_wanted(delegated, is_root=False)


def test_a_scope_offers_what_the_user_manager_was_delegated() -> None:
    offer = cgroup_layout.plan_scope(frozenset({"cpu", "memory", "pids"}), "unix:path=/b")
    assert offer.controllers == {"memory": True, "pids": True, "cpu": True}
    assert offer.scope_bus == "unix:path=/b" and offer.paths == {}
    poorer = cgroup_layout.plan_scope(frozenset({"cpu"}), "unix:path=/b")
    assert poorer.controllers == {"memory": False, "pids": False, "cpu": True}
    assert "Delegate= of user@.service" in poorer.reasons["memory"]


def test_a_refused_scope_keeps_the_hint_and_says_why() -> None:
    support = plan(V2_SELF, V2_MOUNTS, V2_CONTROLLERS, root=False)
    refused = cgroup_layout.refused_scope(support, "no systemd user manager answers at X")
    for controller in ("memory", "pids"):
        assert refused.reasons[controller].startswith(support.reasons[controller])
        assert "Delegate=yes" in refused.reasons[controller]
        assert refused.reasons[controller].endswith("no systemd user manager answers at X")


@pytest.mark.parametrize(
    "env,address",
    [
        ({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/b", "XDG_RUNTIME_DIR": "/x"}, "unix:path=/b"),
        ({"XDG_RUNTIME_DIR": "/run/user/7"}, "unix:path=/run/user/7/bus"),
        ({}, "unix:path=/run/user/{uid}/bus"),
    ],
)
def test_the_user_bus_is_found_as_sd_bus_finds_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], address: str
) -> None:
    import os

    for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert scope.bus_address() == address.format(uid=os.getuid())


def test_v1_commands_make_and_hand_over_the_directories_root_would_use() -> None:
    as_root = plan(V1_SELF, V1_MOUNTS)
    lines = delegation.commands(1, as_root, None, ALICE)
    dirs = ("/sys/fs/cgroup/cpuacct/stockade /sys/fs/cgroup/memory/process_api/8c68/stockade "
            "/sys/fs/cgroup/pids/stockade")  # fmt: skip
    assert lines[1:] == (f"mkdir -p {dirs}", f"chown 1000:1000 {dirs}")
    assert lines[0].startswith("# as root")


def test_v2_with_systemd_lingers_or_installs_the_user_bus_then_systemd_run() -> None:
    lines = delegation.commands(2, plan(V2_SELF, V2_MOUNTS), "/sys/fs/cgroup", ALICE)
    assert lines[1] == "loginctl enable-linger alice"
    assert "systemd-run --user --scope -p Delegate=yes -- sandbox run ..." in lines
    assert "Delegate=yes" in lines
    running = ALICE._replace(user_manager=True)
    lines = delegation.commands(2, plan(V2_SELF, V2_MOUNTS), "/sys/fs/cgroup", running)
    assert lines[1] == "apt-get install dbus-user-session"


def test_v2_without_systemd_delegates_a_subtree_by_hand() -> None:
    machine = ALICE._replace(systemd=False)
    lines = delegation.commands(2, plan(V2_SELF, V2_MOUNTS), "/sys/fs/cgroup", machine)
    cgroup = "/sys/fs/cgroup/stockade-alice"
    assert [line for line in lines if not line.startswith("#")] == [
        f"mkdir {cgroup}",
        f"chown 1000:1000 {cgroup} {cgroup}/cgroup.procs {cgroup}/cgroup.subtree_control "
        f"{cgroup}/cgroup.threads",
        "echo '+memory +pids' > /sys/fs/cgroup/cgroup.subtree_control",
        f"echo <the shell's pid> > {cgroup}/cgroup.procs",
    ]


def test_no_hierarchy_no_commands() -> None:
    assert delegation.commands(None, cgroup_layout.unsupported("none"), None, ALICE) == ()

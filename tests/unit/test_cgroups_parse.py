"""kernel/cgroups/layout.py: parse /proc/self/cgroup and mountinfo, plan paths; and the
refusals of kernel/cgroups/control.py that need no I/O.

No root and no cgroup filesystem needed. The v2 backend is covered here only through its
planning and parsing (and stat files in a plain directory): this test machine is v1.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.errors import UnsupportedError
from stockade.kernel.cgroups import base, ledger, v2
from stockade.kernel.cgroups import control as cgroups
from stockade.kernel.cgroups import layout as cgroup_layout
from stockade.kernel.cgroups.base import CgroupLimits
from stockade.kernel.cgroups.layout import CgroupMount, CgroupSupport

# A legacy (v1) machine with an own memory cgroup, cpu and cpuacct mounted apart.
V1_SELF = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/8c68
2:cpuacct:/
1:cpu:/
0::/
"""
V1_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
"""
# systemd's hybrid layout: v1 controllers, plus an empty cgroup2 at .../unified.
HYBRID_SELF = """\
12:pids:/user.slice/user-1000.slice/session-2.scope
5:cpu,cpuacct:/user.slice
4:memory:/user.slice/user-1000.slice/session-2.scope
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
0::/user.slice/user-1000.slice/session-2.scope
"""
HYBRID_MOUNTS = """\
25 18 0:23 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/memory rw shared:15 - cgroup cgroup rw,memory
36 25 0:34 / /sys/fs/cgroup/pids rw shared:20 - cgroup cgroup rw,pids
"""
# A pure v2 machine (most users).
V2_SELF = "0::/user.slice/user-1000.slice/session-2.scope\n"
V2_MOUNTS = """\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
26 25 0:23 / /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""
V2_CONTROLLERS = frozenset(["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"])
LIMITS = CgroupLimits(memory=64 << 20, pids=16)


def plan(own: str, mounts: str, enabled: frozenset[str] = frozenset(), root: bool = True):
    parsed = cgroup_layout.parse_mountinfo(mounts)
    own_paths = cgroup_layout.parse_proc_cgroup(own)
    return cgroup_layout.plan_support(own_paths, parsed, enabled, root, writable=lambda path: False)


# ------------------------------------------------------------------ /proc/self/cgroup


def test_proc_cgroup_v1_lines_key_each_controller() -> None:
    own = cgroup_layout.parse_proc_cgroup(HYBRID_SELF)
    assert own["memory"] == "/user.slice/user-1000.slice/session-2.scope"
    assert own["cpu"] == own["cpuacct"] == "/user.slice"  # co-mounted: one line, two keys
    assert own["name=systemd"].endswith("session-2.scope")
    assert own[""] == "/user.slice/user-1000.slice/session-2.scope"  # the v2 line


def test_proc_cgroup_v2_only_and_paths_with_colons() -> None:
    assert cgroup_layout.parse_proc_cgroup(V2_SELF) == {
        "": "/user.slice/user-1000.slice/session-2.scope"
    }
    assert cgroup_layout.parse_proc_cgroup("0::/a:b\n") == {"": "/a:b"}


# ------------------------------------------------------------------ mountinfo


def test_mountinfo_v1_keeps_cgroup_mounts_only_with_their_controllers() -> None:
    mounts = cgroup_layout.parse_mountinfo(V1_MOUNTS)
    assert [m.mount_point for m in mounts] == [
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/cpuacct",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/systemd",
    ]
    assert all(m.version == 1 and m.root == "/" for m in mounts)
    assert "memory" in mounts[2].options and "cpuacct" not in mounts[2].options


def test_mountinfo_hybrid_with_optional_fields() -> None:
    mounts = cgroup_layout.parse_mountinfo(HYBRID_MOUNTS)
    unified = [m for m in mounts if m.version == 2]
    assert [m.mount_point for m in unified] == ["/sys/fs/cgroup/unified"]
    both = next(m for m in mounts if m.mount_point == "/sys/fs/cgroup/cpu,cpuacct")
    assert {"cpu", "cpuacct"} <= both.options


def test_mountinfo_v2_only() -> None:
    assert cgroup_layout.parse_mountinfo(V2_MOUNTS) == [
        CgroupMount("/sys/fs/cgroup", "/", 2, frozenset({"rw", "nsdelegate"}))
    ]


def _escape(path: str) -> str:
    # What the kernel's show_mountinfo does (mangle): these four become \ooo.
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


@given(st.text(alphabet="ab/ \t\\,:-", min_size=1).map(lambda s: "/" + s))
def test_mountinfo_unescapes_mount_points(point: str) -> None:
    line = f"40 31 0:37 / {_escape(point)} rw - cgroup cgroup rw,pids\n"
    assert cgroup_layout.parse_mountinfo(line)[0].mount_point == point


# ------------------------------------------------------------------ path planning


def test_cgroup_dir_follows_the_mount_root() -> None:
    whole = CgroupMount("/sys/fs/cgroup/memory", "/", 1, frozenset({"memory"}))
    assert cgroup_layout.cgroup_dir(whole, "/") == "/sys/fs/cgroup/memory"
    assert cgroup_layout.cgroup_dir(whole, "/a/b") == "/sys/fs/cgroup/memory/a/b"
    # A container that bind-mounts only its own part of the hierarchy.
    part = CgroupMount("/sys/fs/cgroup/memory", "/docker/abc", 1, frozenset({"memory"}))
    assert cgroup_layout.cgroup_dir(part, "/docker/abc/x") == "/sys/fs/cgroup/memory/x"
    assert cgroup_layout.cgroup_dir(part, "/docker/other") is None
    assert cgroup_layout.cgroup_dir(whole, "/../outside-our-namespace") is None


def test_plan_v1_puts_runs_under_our_own_cgroup_per_controller() -> None:
    support = plan(V1_SELF, V1_MOUNTS)
    assert support.version == 1
    assert support.controllers == {"memory": True, "pids": True, "cpu": True}
    assert support.paths == {
        "memory": "/sys/fs/cgroup/memory/process_api/8c68/stockade",
        "pids": "/sys/fs/cgroup/pids/stockade",
        "cpu": "/sys/fs/cgroup/cpuacct/stockade",  # accounting: cpuacct, not cpu
    }
    assert cgroup_layout.run_dirs(support, "12-3")["memory"].endswith("/8c68/stockade/12-3")


def test_plan_hybrid_uses_v1_and_shares_co_mounted_directories() -> None:
    support = plan(HYBRID_SELF, HYBRID_MOUNTS, enabled=frozenset())
    assert support.version == 1
    dirs = cgroup_layout.run_dirs(support, "7-0")
    assert dirs["cpu"] == "/sys/fs/cgroup/cpu,cpuacct/user.slice/stockade/7-0"
    assert (
        dirs["pids"]
        == "/sys/fs/cgroup/pids/user.slice/user-1000.slice/session-2.scope/stockade/7-0"
    )
    assert len(set(dirs.values())) == 3


def test_plan_v1_names_a_missing_controller() -> None:
    no_pids = "\n".join(line for line in V1_MOUNTS.splitlines() if "pids" not in line)
    support = plan(V1_SELF, no_pids)
    assert support.version == 1 and not support.controllers["pids"]
    assert "pids" not in support.paths
    assert support.reasons["pids"] == "cgroup v1 pids controller is not mounted"


def test_plan_v1_mount_that_does_not_show_our_cgroup() -> None:
    mounts = V1_MOUNTS.replace(
        "0:32 / /sys/fs/cgroup/memory", "0:32 /elsewhere /sys/fs/cgroup/memory"
    )
    support = plan(V1_SELF, mounts)
    assert not support.controllers["memory"]
    assert "not the part holding our cgroup" in support.reasons["memory"]


def test_plan_v2_as_root_nests_under_our_own_cgroup() -> None:
    support = plan(V2_SELF, V2_MOUNTS, V2_CONTROLLERS)
    assert support.version == 2 and support.mount == "/sys/fs/cgroup"
    assert support.controllers == {"memory": True, "pids": True, "cpu": True}
    scope = "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"
    assert set(support.paths.values()) == {scope + "/stockade"}
    assert set(cgroup_layout.run_dirs(support, "5-1").values()) == {scope + "/stockade/5-1"}
    from_leaf = plan(V2_SELF.rstrip() + "/stockade-supervisor\n", V2_MOUNTS, V2_CONTROLLERS)
    assert from_leaf.paths == support.paths


def test_plan_v2_as_root_in_the_root_cgroup() -> None:
    support = plan("0::/\n", V2_MOUNTS, V2_CONTROLLERS)
    assert set(support.paths.values()) == {"/sys/fs/cgroup/stockade"}


def test_plan_v2_cpu_accounting_needs_no_controller() -> None:
    support = plan(V2_SELF, V2_MOUNTS, frozenset({"pids"}))
    assert support.controllers == {"memory": False, "pids": True, "cpu": True}
    assert "cgroup.controllers" in support.reasons["memory"]


def test_plan_v2_not_root_uses_a_delegated_own_cgroup() -> None:
    own = cgroup_layout.parse_proc_cgroup(V2_SELF)
    mounts = cgroup_layout.parse_mountinfo(V2_MOUNTS)
    scope = "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"
    support = cgroup_layout.plan_support(
        own, mounts, V2_CONTROLLERS, False, writable=lambda path: path.startswith(scope + "/")
    )
    assert support.controllers == {"memory": True, "pids": True, "cpu": True}
    assert set(support.paths.values()) == {scope + "/stockade"}


def test_plan_v2_from_our_leaf_goes_back_to_the_delegated_cgroup() -> None:
    own = cgroup_layout.parse_proc_cgroup(V2_SELF.rstrip() + "/stockade-supervisor\n")
    mounts = cgroup_layout.parse_mountinfo(V2_MOUNTS)
    scope = "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"
    support = cgroup_layout.plan_support(
        own, mounts, V2_CONTROLLERS, False, writable=lambda p: True
    )
    assert set(support.paths.values()) == {scope + "/stockade"}


def test_plan_v2_not_root_points_to_delegation() -> None:
    support = plan(V2_SELF, V2_MOUNTS, V2_CONTROLLERS, root=False)
    assert not any(support.controllers.values())
    assert all("Delegate=yes" in reason for reason in support.reasons.values())


def test_plan_nothing_mounted() -> None:
    support = plan(V2_SELF, "22 1 259:2 / / rw - ext4 /dev/sda1 rw\n")
    assert support.version is None and not any(support.controllers.values())
    assert "no cgroup filesystem" in support.reasons["memory"]


# ------------------------------------------------------------------ small parsers


def test_keyed_reads_stat_files() -> None:
    assert cgroup_layout.keyed("usage_usec 1500000\nuser_usec 1000\n")["usage_usec"] == 1500000
    events = cgroup_layout.keyed("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert events["oom_kill"] == 1
    assert (
        cgroup_layout.keyed("oom_kill_disable 0\nunder_oom 0\n").get("oom_kill") is None
    )  # < 4.13


def test_needed_always_wants_cpu() -> None:
    assert base.needed(CgroupLimits(None, None)) == ("cpu",)
    assert base.needed(LIMITS) == ("memory", "pids", "cpu")


@pytest.mark.parametrize(
    ("name", "pid"), [("123-4", 123), ("9-t1", 9), ("abc", None), ("12", None), ("1-2/x", None)]
)
def test_supervisor_pid(name: str, pid: int | None) -> None:
    assert cgroup_layout.supervisor_pid(name) == pid


# ------------------------------------------------------------------ create's refusals (no I/O)


def _pretend(monkeypatch: pytest.MonkeyPatch, support: CgroupSupport, euid: int = 0) -> None:
    monkeypatch.setattr(cgroups, "detect", lambda: support)
    monkeypatch.setattr(cgroups, "_for_runs", None)  # planned again from `support`
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")  # no scope
    monkeypatch.setattr(os, "geteuid", lambda: euid)


def test_create_names_the_missing_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend(monkeypatch, plan(V2_SELF, V2_MOUNTS, frozenset({"pids"})))
    with pytest.raises(UnsupportedError) as info:
        cgroups.create("1-0", LIMITS)
    assert info.value.missing == "cgroup v2 memory controller"
    assert "cgroup.controllers" in info.value.hint


def test_create_v1_names_cpuacct(monkeypatch: pytest.MonkeyPatch) -> None:
    no_acct = "\n".join(line for line in V1_MOUNTS.splitlines() if "cpuacct" not in line)
    _pretend(monkeypatch, plan(V1_SELF, no_acct))
    with pytest.raises(UnsupportedError, match="cgroup v1 cpuacct controller"):
        cgroups.create("1-0", CgroupLimits(None, None))


def test_create_v2_not_root_refuses_with_systemd_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend(monkeypatch, plan(V2_SELF, V2_MOUNTS, V2_CONTROLLERS, root=False), euid=1000)
    with pytest.raises(UnsupportedError) as info:
        cgroups.create("1-0", CgroupLimits(None, None))
    assert "systemd-run --user --scope -p Delegate=yes" in info.value.hint


@pytest.mark.parametrize("name", ["../x", "1-0/../../etc", "stockade", ""])
def test_create_rejects_names_that_are_not_run_names(name: str) -> None:
    with pytest.raises(ValueError):
        cgroups.create(name, LIMITS)


# ------------------------------------------------------------------ v2 files, in a plain directory


def _fake_v2(tmp_path: Path, **files: str) -> v2.CgroupV2:
    for name, text in files.items():
        (tmp_path / name.replace("__", ".")).write_text(text)
    return v2.CgroupV2(str(tmp_path), frozenset({"memory", "pids"}))


def test_v2_stats_prefer_memory_peak(tmp_path: Path) -> None:
    cg = _fake_v2(
        tmp_path,
        cpu__stat="usage_usec 250000\nuser_usec 200000\nsystem_usec 50000\n",
        memory__peak="9437184\n",
        memory__current="4096\n",
        memory__events="low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n",
    )
    assert cg.stats() == base.CgroupStats(cpu_time=0.25, peak_memory=9437184, oom_killed=True)


def test_v2_stats_fall_back_to_memory_current(tmp_path: Path) -> None:
    cg = _fake_v2(
        tmp_path,
        cpu__stat="usage_usec 0\n",
        memory__current="4096\n",
        memory__events="oom 0\noom_kill 0\n",
    )
    assert cg.stats() == base.CgroupStats(cpu_time=0.0, peak_memory=4096, oom_killed=False)


def test_v2_apply_turns_swap_off_when_it_can(tmp_path: Path) -> None:
    cg = _fake_v2(tmp_path, memory__max="max\n", memory__swap__max="max\n", pids__max="max\n")
    cg.apply(LIMITS)
    assert (tmp_path / "memory.max").read_text() == str(64 << 20)
    assert (tmp_path / "memory.swap.max").read_text() == "0"
    assert (tmp_path / "pids.max").read_text() == "16"


class FakeCgroupfs:
    """Plain directories standing in for cgroupfs: a subtree_control write turns the
    controller on or off for the children, a new directory gets its control files, a pid
    written to cgroup.procs is noted. The root has no cgroup.type, as on the real one."""

    def __init__(self, root: Path) -> None:
        self.root, self.moved = root, []
        for name, text in {"cgroup.subtree_control": "cpu\n", "cgroup.procs": "1\n"}.items():
            (root / name).write_text(text)

    def mkdir(self, path: str, exist_ok: bool) -> None:
        base.mkdir(path, exist_ok)
        new = Path(path)
        controllers = (new.parent / "cgroup.subtree_control").read_text()
        for name, text in {
            "cgroup.controllers": controllers,
            "cgroup.subtree_control": "",
            "cgroup.type": "domain\n",
            "cgroup.procs": "",
        }.items():
            if not (new / name).exists():
                (new / name).write_text(text)

    def write(self, path: str, value: str) -> None:
        file = Path(path)
        if file.name == "cgroup.procs":
            self.moved.append((path, value))
            return
        assert file.name == "cgroup.subtree_control", path
        on = set(file.read_text().split())
        on = on | {value[1:]} if value[0] == "+" else on - {value[1:]}
        file.write_text(" ".join(sorted(on)))
        for child in file.parent.iterdir():
            if child.is_dir():
                (child / "cgroup.controllers").write_text(" ".join(sorted(on)))


@pytest.fixture
def fake_cgroupfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupfs:
    (tmp_path / "cgroup").mkdir()
    fs = FakeCgroupfs(tmp_path / "cgroup")
    monkeypatch.setattr(v2, "mkdir", fs.mkdir)
    monkeypatch.setattr(v2, "write", fs.write)
    monkeypatch.setattr(v2.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ledger, "BOOK", str(tmp_path / "run" / "enabled.json"))
    return fs


def test_v2_as_root_turns_on_only_what_is_off_and_notes_it(fake_cgroupfs: FakeCgroupfs) -> None:
    root = fake_cgroupfs.root
    fake_cgroupfs.mkdir(str(root / "svc"), exist_ok=False)
    (root / "svc" / "cgroup.procs").write_text("42\n43\n")
    support = plan("0::/svc\n", V2_MOUNTS.replace("/sys/fs/cgroup", str(root)), V2_CONTROLLERS)
    cg = v2.make(support, "5-1")
    assert cg.join_paths == (f"{root}/svc/stockade/5-1/cgroup.procs",)
    assert (root / "cgroup.subtree_control").read_text() == "cpu memory pids"
    assert (root / "svc/cgroup.subtree_control").read_text() == "memory pids"
    assert (root / "svc/stockade/5-1/cgroup.controllers").read_text() == "memory pids"
    leaf = f"{root}/svc/stockade-supervisor/cgroup.procs"
    assert fake_cgroupfs.moved == [(leaf, "42"), (leaf, "43")]  # out of the way of controllers
    notes = json.loads((root.parent / "run" / "enabled.json").read_text())
    assert notes == {str(root): ["memory", "pids"], f"{root}/svc": ["memory", "pids"]}


def test_v2_ledger_undoes_bottom_first_and_stops_at_a_foreign_child(
    fake_cgroupfs: FakeCgroupfs,
) -> None:
    root = fake_cgroupfs.root
    fake_cgroupfs.mkdir(str(root / "svc"), exist_ok=False)
    support = plan("0::/svc\n", V2_MOUNTS.replace("/sys/fs/cgroup", str(root)), V2_CONTROLLERS)
    v2.make(support, "5-1")
    fake_cgroupfs.mkdir(str(root / "someone-else"), exist_ok=False)
    shutil.rmtree(root / "svc" / "stockade")  # what the last run's remove does first
    with ledger.held() as book:
        undo = book.undo(str(root), f"{root}/svc", cgroup_layout.LEAF)
    assert undo == [(f"{root}/svc", "memory"), (f"{root}/svc", "pids")]
    shutil.rmtree(root / "someone-else")
    with ledger.held() as book:  # the root's notes stayed in the book until it could go
        undo = book.undo(str(root), f"{root}/svc", cgroup_layout.LEAF)
    assert undo == [(str(root), "memory"), (str(root), "pids")]


def test_v2_nothing_noted_when_it_was_on_already(fake_cgroupfs: FakeCgroupfs) -> None:
    root = fake_cgroupfs.root
    (root / "cgroup.subtree_control").write_text("cpu memory pids\n")
    support = plan("0::/\n", V2_MOUNTS.replace("/sys/fs/cgroup", str(root)), V2_CONTROLLERS)
    v2.make(support, "5-1")
    assert fake_cgroupfs.moved == []  # the root cgroup may keep its processes
    assert json.loads((root.parent / "run" / "enabled.json").read_text() or "{}") == {}

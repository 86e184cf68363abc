"""The pure half of kernel/mounts.py: how the host's runtime is planned into the new root.

Directories become read-only overlays of the run's own and files become copies, never binds:
a bind would show the host's inode, on which file locks are shared with every run and the host.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from stockade import Policy
from stockade.kernel import mounts
from stockade.spawn.plan import Planner


def test_directories_overlay_files_copy_links_stay_links(tmp_path: Path) -> None:
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "ld.so.cache").write_bytes(b"cache")
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    paths = ("usr", "usr/lib", "etc/ld.so.cache", "lib", "missing", "alias/", "usr/../real")
    planned = mounts.plan_runtime(tuple(str(tmp_path / p) for p in paths))
    assert set(planned) == {
        mounts.Overlay(str(tmp_path / "usr"), str(tmp_path / "usr")),  # usr/lib: already in
        mounts.Copy(str(tmp_path / "etc/ld.so.cache"), str(tmp_path / "etc/ld.so.cache")),
        mounts.Symlink(str(tmp_path / "lib"), "usr/lib"),
        # "alias/" normalises to the link itself: a link, as at the top of the host
        mounts.Symlink(str(tmp_path / "alias"), str(tmp_path / "real")),
        mounts.Overlay(str(tmp_path / "real"), str(tmp_path / "real")),
    }


def test_a_link_inside_a_runtime_path_is_resolved_for_the_source(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to("real")
    (tmp_path / "real" / "dir").mkdir()
    planned = mounts.plan_runtime((str(tmp_path / "via" / "dir"),))
    assert planned == (mounts.Overlay(str(tmp_path / "real" / "dir"), str(tmp_path / "via/dir")),)


def test_the_default_root_binds_only_device_nodes() -> None:
    plan = mounts.plan_mounts(
        ("/usr", "/etc/ld.so.cache", "/etc/ssl"),
        uid=65534,
        gid=65534,
        hostname="sandbox",
        workspace_size=1 << 20,
        tmp_size=1 << 20,
        inodes=64,
    )
    devices = [m for m in plan.mounts if isinstance(m, mounts.Device)]
    assert [d.target for d in devices] == [f"/dev/{name}" for name in mounts.DEVICES]
    runtime = [m for m in plan.mounts if isinstance(m, mounts.Overlay | mounts.Copy)]
    assert {m.target for m in runtime} <= {"/usr", "/etc/ld.so.cache", "/etc/ssl"}
    assert all(isinstance(m, mounts.Overlay) == os.path.isdir(m.source) for m in runtime)


def test_overlay_option_escapes_separators() -> None:
    assert mounts._escape("/opt/a:b,c\\d") == "/opt/a\\:b\\,c\\\\d"
    assert mounts._escape("/usr") == "/usr"


def test_mounts_of_another_kind_are_never_equal() -> None:
    """Mounts are NamedTuples, which would equal any tuple of the same values: an Overlay
    must not pass for the Copy of the same paths, in a test or when a plan is compared."""
    overlay, copy = mounts.Overlay("/usr", "/usr"), mounts.Copy("/usr", "/usr")
    assert overlay != copy and (overlay == copy) is False
    assert overlay == mounts.Overlay("/usr", "/usr") and overlay != ("/usr", "/usr")
    assert mounts.RootPlan((overlay,), 1, 1) != mounts.RootPlan((copy,), 1, 1)
    assert len({overlay, mounts.Overlay("/usr", "/usr")}) == 1


def test_the_running_interpreter_is_linked_first_on_path() -> None:
    """By default runs get the interpreter running Stockade, as its real binary (not a venv's
    link to it), its installation shown and its links first on PATH."""
    planner = Planner(Policy.load("default"))
    binary = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
    root = {m.target: m for m in planner.plan(["true"], files={}, env={}).root.mounts}
    version = "{}.{}".format(*sys.version_info)
    for name in ("python", "python3", f"python{version}"):
        assert root[f"{mounts.COMMANDS}/{name}"] == mounts.Symlink(
            f"{mounts.COMMANDS}/{name}", binary
        )
    prefix = os.path.realpath(sys.base_prefix)
    assert root[prefix] == mounts.Overlay(prefix, prefix)
    assert planner.environment({})["PATH"].startswith(f"{mounts.COMMANDS}:")


def test_a_directory_with_mounts_below_is_shown_in_parts_around_them(tmp_path: Path) -> None:
    """In a user namespace the kernel refuses an overlay over a locked mount below its layer
    (EINVAL): such a directory is made in the root, and each entry shown on its own, down to
    the mount points, each an overlay of the mount itself."""
    usr = tmp_path / "usr"
    for directory in ("bin", "local/src/inner", "local/share", "share"):
        (usr / directory).mkdir(parents=True)
    (usr / "local" / "README").write_text("copied")
    (usr / "lib").symlink_to("share")
    os.mkfifo(usr / "local" / "fifo")  # left out, as an overlay's root leaves it out
    points = frozenset({f"{usr}/local/src", f"{usr}/local/src/inner", "/elsewhere"})
    planned = mounts.plan_runtime((str(usr),), points)
    assert planned == (
        mounts.Overlay(f"{usr}/bin", f"{usr}/bin"),
        mounts.Symlink(f"{usr}/lib", "share"),
        mounts.Copy(f"{usr}/local/README", f"{usr}/local/README"),
        mounts.Overlay(f"{usr}/local/share", f"{usr}/local/share"),
        mounts.Overlay(f"{usr}/local/src/inner", f"{usr}/local/src/inner"),
        mounts.Overlay(f"{usr}/share", f"{usr}/share"),
    )
    assert mounts.plan_runtime((str(usr),), frozenset({str(usr), f"{usr}x/y"})) == (
        mounts.Overlay(str(usr), str(usr)),  # a mount *at* it, or beside it, is no matter
    )


def test_mount_points_are_read_unescaped(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / / rw - ext4 /dev/sda rw\n"
        "23 22 0:22 / /usr/my\\040dir rw,nosuid - tmpfs tmpfs rw\n"
    )
    assert mounts.own_mount_points(str(mountinfo)) == {"/", "/usr/my dir"}
    assert mounts.below("/usr", mounts.own_mount_points(str(mountinfo))) == ["/usr/my dir"]

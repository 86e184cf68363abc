"""A workspace's file calls never follow a link out of /workspace (or /tmp): not at the last
name, not on the way, not when exporting or importing; and they never reach a host path.
Each refusal is paired with the same call on a plain file, which works."""

from __future__ import annotations

import errno
import io
import tarfile
from collections.abc import Iterator

import pytest

from stockade import Policy, PolicyError, Sandbox, Workspace, WorkspaceFileError
from tests.conftest import needs_root

pytestmark = needs_root()


@pytest.fixture
def ws() -> Iterator[Workspace]:
    with Sandbox(Policy.load("default")).workspace() as workspace:
        made = workspace.exec(
            "echo plain > plain.txt && mkdir real && echo inner > real/inner.txt"
            " && ln -s /etc/passwd out && ln -s /etc etc-dir && ln -s plain.txt inside-link"
        )
        assert made.ok, made
        yield workspace


def test_reading_a_link_that_points_out_is_refused(ws: Workspace) -> None:
    assert ws.read_file("plain.txt") == b"plain\n"
    with pytest.raises(WorkspaceFileError) as last:
        ws.read_file("out")
    assert last.value.errno == errno.ELOOP
    with pytest.raises(WorkspaceFileError) as inside:  # even one that stays inside
        ws.read_file("inside-link")
    assert inside.value.errno == errno.ELOOP


def test_a_link_on_the_way_is_refused(ws: Workspace) -> None:
    assert ws.read_file("real/inner.txt") == b"inner\n"
    assert [e.name for e in ws.list("real")] == ["inner.txt"]
    for call in (
        lambda: ws.read_file("etc-dir/passwd"),
        lambda: ws.list("etc-dir"),
        lambda: ws.write_file("etc-dir/planted", "x"),
        lambda: ws.export("etc-dir"),
    ):
        with pytest.raises(WorkspaceFileError) as refused:
            call()
        assert refused.value.errno in (errno.ENOTDIR, errno.ELOOP)


def test_writing_through_a_link_replaces_nothing_it_points_to(ws: Workspace) -> None:
    ws.write_file("plain-copy.txt", "new")
    assert ws.read_file("plain-copy.txt") == b"new"
    with pytest.raises(WorkspaceFileError) as refused:
        ws.write_file("inside-link", "through the link")
    assert refused.value.errno == errno.ELOOP
    assert ws.read_file("plain.txt") == b"plain\n"


def test_a_fifo_is_never_written_to(ws: Workspace) -> None:
    """Opened to write, a fifo with no reader blocks, and one with a reader takes what it is
    given until the reader stops: either held the call's handler, and a pid, until its
    timeout. Both are refused at once instead, as by a write, so by an import."""
    reader = ws.start(["sh", "-c", "mkfifo read-end no-reader; exec 3<>read-end; sleep 60"])
    try:
        assert ws.exec("while [ ! -p read-end ]; do sleep 0.01; done").ok
        with pytest.raises(WorkspaceFileError) as no_reader:
            ws.write_file("no-reader", "x")
        assert no_reader.value.errno == errno.ENXIO
        with pytest.raises(WorkspaceFileError, match="not a regular file"):
            ws.write_file("read-end", "x")
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as made:
            member = tarfile.TarInfo("no-reader")
            made.addfile(member, io.BytesIO(b""))
        with pytest.raises(WorkspaceFileError):
            ws.import_(tar.getvalue())
        ws.write_file("plain-copy.txt", "x")  # a plain file still takes it
    finally:
        reader.kill()
        reader.wait()


def test_paths_outside_are_refused_before_anything_runs(ws: Workspace) -> None:
    for path in ("/etc/passwd", "../etc/passwd", "/workspace/../etc/passwd", "/proc/1/environ"):
        with pytest.raises(PolicyError, match="path"):
            ws.read_file(path)
    with pytest.raises(PolicyError, match="path"):
        ws.remove("/workspace")


def test_export_keeps_links_as_links_and_reads_nothing_through_them(ws: Workspace) -> None:
    with tarfile.open(fileobj=io.BytesIO(ws.export())) as tar:
        members = {m.name: m for m in tar}
        assert members["out"].issym() and members["out"].linkname == "/etc/passwd"
        assert members["etc-dir"].issym()
        assert not any(name.startswith("etc-dir/") for name in members)
        assert tar.extractfile("plain.txt").read() == b"plain\n"  # type: ignore[union-attr]


def test_an_import_never_writes_through_a_link(ws: Workspace) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
        tar.addfile(link)
        planted = tarfile.TarInfo("escape/planted")
        planted.size = 1
        tar.addfile(planted, io.BytesIO(b"x"))
    with pytest.raises(WorkspaceFileError) as refused:
        ws.import_(archive.getvalue())
    assert refused.value.errno in (errno.ENOTDIR, errno.ELOOP)
    assert ws.exec(["test", "-e", "/tmp/planted"]).exit_code == 1
    assert ws.exec(["readlink", "escape"]).stdout == "/tmp\n"  # the link itself was made


def test_file_sizes_are_capped_by_the_policy() -> None:
    box = Sandbox(Policy.load("default").override(collect_size="64K", file_size="128K"))
    with box.workspace() as ws:
        ws.write_file("small", b"x" * 1000)
        assert len(ws.read_file("small")) == 1000
        with pytest.raises(PolicyError, match="file_size"):
            ws.write_file("big", b"x" * (200 << 10))
        assert ws.exec("head -c 100K /dev/zero > big").ok
        with pytest.raises(WorkspaceFileError) as over:
            ws.read_file("big")
        assert over.value.errno == errno.EFBIG
        with pytest.raises(WorkspaceFileError) as export:
            ws.export()
        assert export.value.errno == errno.EFBIG

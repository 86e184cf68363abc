"""Collection never follows a link the workload made and never opens a special file: a link
to a host file, to a file the sandbox itself can read, or to a directory outside /workspace
comes back as a warning, never as content; a fifo does not hang the collection, a socket is
not opened; no hard link reaches a file outside /workspace. Fresh, prepared and pooled runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade import Policy, Result, Sandbox, Status
from tests.conftest import needs_root

pytestmark = needs_root()


@pytest.fixture(params=["fresh", "prepared", "pooled"])
def runner(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    kind = request.param
    policy = Policy.load("default").override(timeout=10)
    with Sandbox(policy, pool=1 if kind == "pooled" else 0, prefork=kind == "prepared") as box:
        if kind == "prepared":
            box.run_code("pass")
        yield box


@pytest.fixture
def host_file() -> Iterator[tuple[str, str]]:
    """A host file (path, content) the sandbox must never hand back: in /etc, where a
    host-side reader that followed links would find it."""
    token = f"stockade-collect-secret-{uuid.uuid4().hex}"  # the content, not in the name
    path = Path("/etc") / f"stockade-collect-{uuid.uuid4().hex}"
    path.write_text(token)
    try:
        yield str(path), token
    finally:
        path.unlink()


def _contents(result: Result) -> bytes:
    return b"".join(result.files.values())


def test_a_link_to_a_host_file_is_never_followed(
    runner: Sandbox, host_file: tuple[str, str]
) -> None:
    path, token = host_file
    code = (
        "import os\n"
        f"os.symlink({path!r}, 'secret')\n"
        "os.symlink('/proc/1/root' + " + repr(path) + ", 'through-proc')\n"
        "os.symlink('/etc/shadow', 'shadow')\n"
        "os.symlink('/workspace/secret', 'chained')\n"
    )
    result = runner.run_code(code, collect=True)
    assert result.status is Status.OK, result
    assert token.encode() not in _contents(result)
    assert set(result.files) == {"main.py"}
    (warning,) = result.warnings
    for name in ("secret", "through-proc", "shadow", "chained"):
        assert f"{name} (a symbolic link: never followed)" in warning


def test_a_link_to_a_file_the_sandbox_can_read_is_not_followed_either(runner: Sandbox) -> None:
    # Inside, /etc/passwd is the run's own: a collector that followed links would return it.
    code = "import os\nos.symlink('/etc/passwd', 'passwd')\nos.symlink('main.py', 'again.py')\n"
    result = runner.run_code(code, collect=["passwd", "again.py"])
    assert result.status is Status.OK, result
    assert result.files == {}
    assert "passwd (a symbolic link: never followed)" in result.warnings[0]


def test_a_link_to_a_directory_outside_is_not_walked(runner: Sandbox) -> None:
    code = (
        "import os\nos.symlink('/usr/lib', 'lib')\nos.symlink('/etc', 'etc')\n"
        "os.mkdir('d')\nos.symlink('/usr', 'd/usr')\n"
    )
    result = runner.run_code(code, collect=["**"])
    assert result.status is Status.OK, result
    assert set(result.files) == {"main.py"}
    assert "d/usr (a symbolic link" in result.warnings[0]
    assert "lib (a symbolic link" in result.warnings[0]


def test_a_fifo_does_not_hang_the_collection_and_a_socket_is_not_opened(
    runner: Sandbox,
) -> None:
    code = (
        "import os, socket\nos.mkfifo('fifo')\n"
        "s = socket.socket(socket.AF_UNIX)\ns.bind('sock')\n"
        "open('real', 'w').write('real')\n"
    )
    result = runner.run_code(code, collect=["fifo", "sock", "real"])
    assert result.status is Status.OK, result  # a fifo opened for reading would block here
    assert result.files == {"real": b"real"}
    for name in ("fifo", "sock"):
        assert (
            f"{name} (not a regular file (a fifo, socket or device): never opened)"
            in (result.warnings[0])
        )


def test_no_device_node_and_no_hard_link_out_can_be_made(runner: Sandbox) -> None:
    # What collection could be made to read instead: a device node (no CAP_MKNOD, and
    # /workspace is nodev) or a hard link to a file outside (/workspace is a tmpfs of its own).
    code = (
        "import os, stat\n"
        "for make in (lambda: os.mknod('mem', stat.S_IFCHR | 0o666, os.makedev(1, 1)),\n"
        "             lambda: os.link('/etc/passwd', 'passwd'),\n"
        "             lambda: os.link('/tmp', 'tmp'),\n"
        "             lambda: (open('/tmp/t', 'w').close(), os.link('/tmp/t', 't'))):\n"
        "    try:\n"
        "        make()\n"
        "        print('MADE')\n"
        "    except OSError as e:\n"
        "        print('refused', e.errno)\n"
    )
    result = runner.run_code(code, collect=True)
    assert result.status is Status.OK, result
    assert "MADE" not in result.stdout, result.stdout
    assert set(result.files) == {"main.py"}


def test_an_unreadable_file_is_named_not_fatal(runner: Sandbox) -> None:
    code = "import os\nopen('locked', 'w').write('x')\nos.chmod('locked', 0)\n"
    result = runner.run_code(code, collect=["locked"])
    assert result.status is Status.OK, result
    assert result.files == {}
    assert "locked (cannot be opened: Permission denied)" in result.warnings[0]

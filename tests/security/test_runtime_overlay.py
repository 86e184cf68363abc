"""The host's runtime is shown through per-run read-only overlays (directories) and copies
(files), never binds: inodes of the run's own, so file locks taken inside stay inside, while
the runtime stays read-only, nosuid and nodev, and nothing written reaches the host.

(Runs at once sharing a lock: the attack programs information/*lock*_cross_run.)"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade import Policy, Sandbox, Status
from stockade.kernel.mounts import PROC_MASKED_DIRS, PROC_MASKED_FILES, PROC_READ_ONLY

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")


def _with_readonly(*paths: str) -> Sandbox:
    data = Policy.load("default").override(timeout=20).model_dump()
    data["filesystem"]["readonly"] = [*data["filesystem"]["readonly"], *paths]
    return Sandbox(Policy.from_dict(data))


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A directory to list in `readonly`: not under /tmp (each run has its own /tmp there)."""
    path = Path(tempfile.mkdtemp(prefix="stockade-overlay-test-", dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


MOUNTS = """
import os, sys
for line in open("/proc/self/mountinfo"):
    fields = line.split()
    sep = fields.index("-")
    print(fields[4], fields[5], fields[sep + 1], fields[sep + 3])
"""


def test_runtime_directories_are_read_only_overlays(box: Sandbox) -> None:
    result = box.run(["python3", "-c", MOUNTS])
    assert result.status is Status.OK, result
    mounts = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    prefix = os.path.realpath(sys.base_prefix)
    for target in ("/usr", prefix, "/etc/ssl"):
        flags, fstype, options = mounts[target]
        assert fstype == "overlay", mounts[target]
        assert {"ro", "nosuid", "nodev"} <= set(flags.split(",")), mounts[target]
        assert "upperdir" not in options
    # Nothing of the host's is bound (the device nodes are the run's own, made with mknod);
    # the host run dir is never named.
    own = {"/", "/proc", "/proc/sys", "/proc/keys", "/dev", "/dev/shm", "/tmp", "/workspace"}
    locked = {f"/proc/{n}" for n in (*PROC_MASKED_FILES, *PROC_MASKED_DIRS, *PROC_READ_ONLY)}
    found = {t for t, (_, fstype, _) in mounts.items() if fstype != "overlay"}
    assert own <= found and found - own <= locked, found  # /proc's masks: where the kernel has it
    assert "stockade-" not in result.stdout


LOCKS = """
import fcntl, os, struct, sys
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDONLY)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
    posix = "posix-free" if struct.unpack("hhqqi4x", answer)[0] == fcntl.F_UNLCK else "posix-seen"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print(path, "flock-free", posix)
    except OSError:
        print(path, "flock-seen", posix)
"""


def test_host_locks_on_runtime_files_are_not_seen_inside(box: Sandbox) -> None:
    """The host holds a flock and a POSIX lock on a runtime directory's file and on a runtime
    file (a copy inside); the run sees neither, and takes its own without waiting."""
    paths = [os.__file__, "/etc/ld.so.cache"]
    held = []
    try:
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            held.append(fd)
            fcntl.flock(fd, fcntl.LOCK_SH)
            # OFD lock: held by this fd, whatever thread pytest runs in.
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 0, 0))
        result = box.run(["python3", "-c", LOCKS, *paths])
    finally:
        for fd in held:
            os.close(fd)
    assert result.status is Status.OK, result
    assert result.stdout.splitlines() == [f"{p} flock-free posix-free" for p in paths]


def test_a_runtime_file_is_a_read_only_copy_with_its_permissions(host_dir: Path) -> None:
    (host_dir / "public").write_bytes(b"public content\n")
    (host_dir / "public").chmod(0o644)
    (host_dir / "secret").write_bytes(b"secret content\n")
    (host_dir / "secret").chmod(0o600)
    box = _with_readonly(str(host_dir / "public"), str(host_dir / "secret"))
    script = f"""
import os
print(open("{host_dir}/public").read().strip(), oct(os.stat("{host_dir}/public").st_mode))
for path in ("{host_dir}/public", "{host_dir}/secret"):
    for mode in ("r", "a"):
        try:
            open(path, mode).close()
            print(path, mode, "opened")
        except OSError as e:
            print(path, mode, "denied", e.errno)
"""
    result = box.run(["python3", "-c", script])
    assert result.status is Status.OK, result
    lines = result.stdout.splitlines()
    assert lines[0] == "public content 0o100644"
    assert lines[1:] == [
        f"{host_dir}/public r opened",
        f"{host_dir}/public a denied 30",  # EROFS
        f"{host_dir}/secret r denied 13",  # EACCES: root's, 0600
        f"{host_dir}/secret a denied 30",  # EROFS comes first
    ]
    assert (host_dir / "public").read_bytes() == b"public content\n"


def test_a_fifo_in_readonly_fails_the_setup_at_once(host_dir: Path) -> None:
    os.mkfifo(host_dir / "fifo")
    result = _with_readonly(str(host_dir / "fifo")).run(["true"])
    assert result.status is Status.SETUP_FAILED, result
    assert "neither a directory nor a regular file" in (result.error or ""), result
    assert result.wall_time < 5


def test_odd_names_and_nesting(host_dir: Path) -> None:
    """Separators of overlay's options in a name; a path inside another is not mounted twice."""
    odd = host_dir / "a:b,c\\d"
    (odd / "sub").mkdir(parents=True)
    (odd / "sub" / "f").write_text("nested")
    box = _with_readonly(str(odd), str(odd / "sub"))
    result = box.run(["cat", f"{odd}/sub/f"])
    assert result.status is Status.OK, result
    assert result.stdout == "nested"


def test_a_socket_under_a_runtime_directory_cannot_be_connected(host_dir: Path) -> None:
    """The overlay's inode is not the socket's: a bound directory no longer hands out the
    host's pathname sockets in it."""
    path = str(host_dir / "sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen()
    script = f"""
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("{path}")
    print("CONNECTED")
except OSError as e:
    print("REFUSED", e.errno)
"""
    with server:
        result = _with_readonly(str(host_dir)).run(["python3", "-c", script])
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing queued: no connection ever came
            server.accept()
    assert result.status is Status.OK, result
    assert result.stdout.strip() == "REFUSED 111", result  # ECONNREFUSED

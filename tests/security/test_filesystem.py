"""The host filesystem is invisible but for read-only runtime binds; only /workspace and /tmp
are writable, size-capped and per run."""

from __future__ import annotations

import os
import uuid

import pytest

from stockade import Sandbox, Status

WRITE = """
import sys
try:
    with open(sys.argv[1], "w") as f:
        f.write("x")
    print("WROTE")
except OSError as e:
    print("DENIED", e.errno)
"""


@pytest.mark.parametrize("path", ["/workspace/f", "/tmp/f", "/dev/shm/f"])
def test_writable_places_work(box: Sandbox, path: str) -> None:
    result = box.run(["python3", "-c", WRITE, path])
    assert result.stdout.strip() == "WROTE", result


@pytest.mark.parametrize(
    "path",
    [
        "/f",
        "/etc/f",
        "/usr/f",
        "/usr/bin/python3",
        "/root/f",
        "/proc/f",
        "/dev/f",
        "/bin/f",
        "/proc/self/root/etc/passwd2",
        "/workspace/../f",
        "/tmp/../../usr/f",
    ],
)
def test_writes_elsewhere_fail(box: Sandbox, path: str) -> None:
    result = box.run(["python3", "-c", WRITE, path])
    assert result.stdout.startswith("DENIED"), result


@pytest.fixture
def host_secret() -> str:
    """A file on the host that the sandbox must not see, in places the supervisor can read."""
    token = uuid.uuid4().hex
    paths = [
        f"/root/stockade-secret-{token}",
        f"/home/stockade-secret-{token}",
        f"/var/tmp/stockade-secret-{token}",
        f"/etc/stockade-secret-{token}",
    ]
    os.makedirs("/home", exist_ok=True)
    for path in paths:
        with open(path, "w") as file:
            file.write(token)
    yield token
    for path in paths:
        os.unlink(path)


LOOK = """
import glob, os, sys
token = sys.argv[1]
candidates = []
for pattern in ["/workspace/*", "/root/*", "/home/*", "/var/tmp/*", "/etc/*",
                "/proc/self/root/root/*", "/proc/1/root/root/*", "/proc/*/cwd/*",
                "/proc/*/root/etc/*",
                "/workspace/../root/*", "/tmp/../home/*"]:
    candidates += glob.glob(pattern)
found = []
for path in candidates:
    try:
        if token in open(path, errors="replace").read():
            found.append(path)
    except OSError:
        pass
for d in ("/root", "/home"):
    link = "/workspace/link" + d.replace("/", "_")
    try:
        os.symlink(d, link)
        found += [p for p in glob.glob(link + "/*") if token in p]
    except OSError:
        pass
print("FOUND" if found else "HIDDEN", found)
"""


def test_host_files_are_hidden(box: Sandbox, host_secret: str) -> None:
    result = box.run(["python3", "-c", LOOK, host_secret])
    assert result.stdout.startswith("HIDDEN"), result


def test_the_search_finds_a_visible_file(box: Sandbox, host_secret: str) -> None:
    """The other half of the pair: the same search finds the token where it is visible."""
    result = box.run(["python3", "-c", LOOK, host_secret], files={"x": host_secret.encode()})
    assert result.stdout.startswith("FOUND"), result


def test_host_proc_is_not_reachable(box: Sandbox) -> None:
    script = "import os; print(sorted(p for p in os.listdir('/proc') if p.isdigit()))"
    result = box.run(["python3", "-c", script])
    pids = eval(result.stdout)
    assert len(pids) <= 3, result  # init, the workload, maybe a child: not the host's
    assert str(os.getpid()) not in pids or os.getpid() <= 3


def test_no_sys_and_minimal_dev(box: Sandbox) -> None:
    result = box.run(["sh", "-c", "ls /dev; ls /sys 2>&1 | head -1"])
    names = set(result.stdout.split())
    assert {"null", "zero", "full", "random", "urandom", "shm", "fd"} <= names
    assert not names & {"sda", "mem", "kmsg", "vda", "console"}
    assert "No such file" in result.stdout


def test_readonly_interpreter_cannot_be_overwritten(box: Sandbox) -> None:
    script = "import sys, os; f=os.path.realpath(sys.executable); open(f, 'ab')"
    result = box.run(["python3", "-c", script])
    assert result.status is Status.NONZERO_EXIT
    assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr


def test_tmp_is_size_capped(box: Sandbox) -> None:
    capped = Sandbox(box.policy.override(tmp_size="1M"))
    result = capped.run(["sh", "-c", "head -c 2000000 /dev/zero > /tmp/big; echo $?"])
    assert result.stdout.strip() != "0"
    assert "No space left" in result.stderr, result


def test_workspace_is_per_run(box: Sandbox) -> None:
    box.run(["sh", "-c", "echo left > /workspace/mark; echo left > /tmp/mark"])
    result = box.run(["sh", "-c", "cat /workspace/mark /tmp/mark"])
    assert "left" not in result.stdout
    assert result.status is Status.NONZERO_EXIT


def test_planted_symlinks_do_not_harm_the_host(box: Sandbox, tmp_path) -> None:
    """Judge0 CVE-2024-28185: links planted for the supervisor's post-run work lead nowhere."""
    victim = tmp_path / "victim"
    victim.write_text("intact")
    script = f"""
import os
for name in ("main.py", "out", "result"):
    try: os.unlink("/workspace/" + name)
    except OSError: pass
    os.symlink("{victim}", "/workspace/" + name)
os.symlink("/", "/workspace/rootlink")
"""
    result = box.run(["python3", "-c", script], files={"main.py": b"x"})
    assert result.status is Status.OK, result
    assert victim.read_text() == "intact"

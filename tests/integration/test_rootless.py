"""Rootless mode: the suite's core containment checks again, as an ordinary user, through
the CLI (run with setpriv), and the refusals when what rootless needs is missing.

The user is made for the test and removed after. The pyenv interpreter lives under /root
(mode 0700), out of an ordinary user's reach, so the user runs the system python3 with a
copy of the package and its dependencies in a world-readable temp dir.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox import cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a test user")

SYSTEM_PYTHON = "/usr/bin/python3"
PACKAGES = ("sandbox", "policies", "pydantic", "pydantic_core", "typing_extensions",
            "annotated_types", "typing_inspection", "pyseccomp")  # fmt: skip
NO_NESTING = Path(__file__).with_name("userns_without_nesting.py")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    kit: str  # where the package and its dependencies are, readable by the user

    def sandbox(
        self, *args: str, policy: str | None = None, wrap: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        command = [
            *wrap,
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"PYTHONPATH={self.kit}",
            SYSTEM_PYTHON,
            "-m",
            "sandbox",
            args[0],
            *(("--policy", policy) if policy else ()),
            *args[1:],
        ]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env={**os.environ, "PYTHONPATH": self.kit},
        )


def _system_python_matches() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return version == str(sys.version_info[:2])


def _make_kit() -> str:
    kit = tempfile.mkdtemp(prefix="rootless-kit-")
    os.chmod(kit, 0o755)
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        if spec.submodule_search_locations:
            source = next(iter(spec.submodule_search_locations))
            shutil.copytree(
                source, os.path.join(kit, name), ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(spec.origin, kit)
    for root, dirs, files in os.walk(kit):
        for entry in dirs + files:
            os.chmod(os.path.join(root, entry), 0o755)
    return kit


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    if not _system_python_matches():
        pytest.skip(f"needs {SYSTEM_PYTHON} of this test's Python version outside /root")
    name = f"stockade-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ],
        check=True,
    )
    kit = _make_kit()
    try:
        import pwd

        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid, kit)
    finally:
        subprocess.run(["userdel", name], check=True)
        shutil.rmtree(kit)


@pytest.fixture
def delegated(user: User) -> Iterator[None]:
    """What an administrator does on a cgroup v1 machine: a `stockade` cgroup per controller
    owned by the user, under which the user's runs make their own cgroups."""
    support = cgroups.detect()
    if support.version != 1:
        pytest.skip("the test delegates cgroup v1 directories; this machine has cgroup v2")
    made = []
    for path in sorted(set(support.paths.values())):
        if not os.path.isdir(path):
            os.mkdir(path)
            made.append(path)
        os.chown(path, user.uid, user.gid)
    try:
        yield
    finally:
        for path in sorted(set(support.paths.values())):
            os.chown(path, 0, 0)
        for path in made:
            # Busy only while a concurrent root run uses the same parent; that run's own
            # cleanup removes the (again root-owned) parent once it is empty.
            with contextlib.suppress(OSError):
                os.rmdir(path)


BEST_EFFORT = "/tmp/stockade-best-effort.toml"


@pytest.fixture
def best_effort() -> Iterator[str]:
    with open(BEST_EFFORT, "w") as file:
        file.write('name = "best-effort"\n[limits]\ncgroups = "best_effort"\n')
    os.chmod(BEST_EFFORT, 0o644)
    yield BEST_EFFORT
    os.unlink(BEST_EFFORT)


def _json(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


RUNTIME_TOP_LEVEL = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp",
                     "usr", "workspace"}  # fmt: skip
CONTAINMENT = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
print("uid", os.getuid(), "caps", int(status["CapEff"], 16), int(status["CapBnd"], 16),
      "nnp", status["NoNewPrivs"].strip(), "seccomp", status["Seccomp"].strip())
print("root", sorted(os.listdir("/")))
for name, number, args in (("mount", 165, (0, 0, 0, 0, 0)), ("unshare", 272, (0x10000000,)),
                           ("ptrace", 101, (0, 0, 0, 0))):
    result = libc.syscall(number, *args)
    print(name, errno.errorcode.get(ctypes.get_errno()) if result == -1 else "OK")
for path in ("/etc/f", "/usr/f", "/f"):
    try:
        open(path, "w")
        print("wrote", path)
    except OSError:
        pass
open("/workspace/ok", "w").write("fine")
print("net", sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]))
"""


def test_core_containment_holds_rootless(user: User, delegated: None) -> None:
    result = _json(user.sandbox("run", "--json", "--", "python3", "-c", CONTAINMENT))
    assert result["status"] == "ok", result
    lines = result["stdout"].splitlines()
    assert lines[0] == "uid 65534 caps 0 0 nnp 1 seccomp 2"
    top = set(eval(lines[1].removeprefix("root ")))
    assert {"proc", "tmp", "usr", "workspace"} <= top <= RUNTIME_TOP_LEVEL
    assert lines[2:5] == ["mount EPERM", "unshare EPERM", "ptrace EPERM"]
    assert not any(line.startswith("wrote") for line in lines)
    assert lines[-1] == "net ['lo']"
    assert result["warnings"] == []


def test_limits_hold_rootless(user: User, delegated: None) -> None:
    memory = _json(
        user.sandbox(
            "run", "--json", "--memory", "48M", "--", "python3", "-c", "x = bytearray(256 << 20)"
        )
    )
    assert memory["status"] == "memory_limit", memory
    timeout = _json(
        user.sandbox(
            "run",
            "--json",
            "--timeout",
            "1",
            "--",
            "sh",
            "-c",
            "(setsid sleep 1000 &); trap '' TERM; sleep 1000",
        )
    )
    assert timeout["status"] == "timeout", timeout
    bomb = _json(
        user.sandbox(
            "run",
            "--json",
            "--pids",
            "16",
            "--",
            "sh",
            "-c",
            "for i in $(seq 40); do sleep 5 & done; wait",
        )
    )
    assert "fork" in bomb["stderr"].lower() or "resource" in bomb["stderr"].lower(), bomb


def test_host_environment_and_files_are_hidden_rootless(user: User, delegated: None) -> None:
    result = _json(
        user.sandbox(
            "run", "--json", "--", "sh", "-c", "env; ls /home /root 2>&1; cat /proc/1/environ 2>&1"
        )
    )
    assert "PYTHONPATH" not in result["stdout"]
    assert "No such file" in result["stdout"] or "Permission denied" in result["stdout"]


def test_refused_without_cgroup_delegation(user: User) -> None:
    done = user.sandbox("run", "--", "true")
    assert done.returncode == 125
    assert "cgroup" in done.stderr and "Delegate=yes" in done.stderr


def test_best_effort_runs_on_rlimits_and_says_so(user: User, best_effort: str) -> None:
    result = _json(
        user.sandbox("run", "--json", "--", "python3", "-c", "print(6 * 7)", policy=best_effort)
    )
    assert result["status"] == "ok" and result["stdout"] == "42\n"
    warnings = " ".join(result["warnings"])
    assert "RLIMIT_AS" in warnings and "RLIMIT_NPROC" in warnings and "RLIMIT_CPU" in warnings
    hog = _json(
        user.sandbox(
            "run",
            "--json",
            "--memory",
            "64M",
            "--",
            "python3",
            "-c",
            "x = bytearray(256 << 20)",
            policy=best_effort,
        )
    )
    assert hog["status"] == "nonzero_exit" and "MemoryError" in hog["stderr"], hog


def test_refused_without_user_namespaces(user: User, best_effort: str) -> None:
    """Make user namespaces really missing: inside a throw-away user namespace whose
    user.max_user_namespaces is 0 (the trick bubblewrap's --disable-userns uses)."""
    wrap = (sys.executable, str(NO_NESTING), str(user.uid), str(user.gid))
    done = user.sandbox("run", "--", "true", policy=best_effort, wrap=wrap)
    assert done.returncode == 125, done
    assert "user namespaces" in done.stderr and "max_user_namespaces" in done.stderr


def test_doctor_as_the_user(user: User, delegated: None) -> None:
    done = user.sandbox("doctor", "--json")
    report = json.loads(done.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["namespace.user"]["available"] and checks["cgroup.create"]["available"]
    assert done.returncode == 0 and report["ok"]


def test_doctor_without_delegation_says_how(user: User) -> None:
    done = user.sandbox("doctor")
    assert done.returncode == 1
    assert "MISSING cgroup.create" in done.stdout and "Delegate=yes" in done.stdout

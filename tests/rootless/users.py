"""Test users for the rootless tests: an ordinary user made for the test, who runs the system
python3 with a copy of the package (the pyenv interpreter lives under /root, mode 0700, out of
an ordinary user's reach), and the cgroups an administrator delegates to them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade.kernel.cgroups import control as cgroups
from stockade.kernel.cgroups import layout
from stockade.kernel.cgroups.delegation import V2_DELEGATED_FILES

SYSTEM_PYTHON = "/usr/bin/python3"
PACKAGES = ("stockade", "stockade.policies", "pydantic", "pydantic_core", "typing_extensions",
            "annotated_types", "typing_inspection", "pyseccomp", "pyroute2", "psutil",
            "jeepney")  # fmt: skip
NO_NESTING = Path(__file__).with_name("userns_without_nesting.py")


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    kit: str  # where the package and its dependencies are, readable by the user
    # Run as root before the user's command (it exec's the rest): moving into a cgroup.
    before: tuple[str, ...] = ()

    def sandbox(
        self,
        *args: str,
        policy: str | None = None,
        wrap: tuple[str, ...] = (),
        env: tuple[str, ...] = (),
        groups: tuple[int, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        options = ("--policy", policy) if policy else ()
        command = ("-m", "stockade", args[0], *options, *args[1:])
        return self.python(*command, wrap=wrap, env=env, groups=groups)

    def python(
        self,
        *args: str,
        wrap: tuple[str, ...] = (),
        env: tuple[str, ...] = (),
        groups: tuple[int, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        """The system python3 as this user (with these supplementary groups), with the kit on
        its path; `env`: more NAME=value."""
        return subprocess.run(
            self.command(*args, wrap=wrap, env=env, groups=groups),
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
            env={**os.environ, "PYTHONPATH": self.kit},
        )

    def command(
        self,
        *args: str,
        wrap: tuple[str, ...] = (),
        env: tuple[str, ...] = (),
        groups: tuple[int, ...] = (),
    ) -> list[str]:
        return [
            *wrap,
            *self.before,
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"PYTHONPATH={self.kit}",
            *env,
            SYSTEM_PYTHON,
            *args,
        ]


def json_of(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def assert_limits_hold(user: User) -> None:
    """A run's memory, wall-clock and pids limits hold for its whole tree, as `user`."""
    hog = ("--memory", "48M", "--", "python3", "-c", "x = bytearray(256 << 20)")
    daemon = ("--timeout", "1", "--", "sh", "-c", "(setsid sleep 1000 &); trap '' TERM; sleep 1000")
    bomb = ("--pids", "16", "--", "sh", "-c", "for i in $(seq 40); do sleep 5 & done; wait")
    memory, timeout, forks = (
        json_of(user.sandbox("run", "--json", *a)) for a in (hog, daemon, bomb)
    )
    assert memory["status"] == "memory_limit", memory
    assert timeout["status"] == "timeout", timeout
    assert "fork" in forks["stderr"].lower() or "resource" in forks["stderr"].lower(), forks


def system_python_matches() -> bool:
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
        target = os.path.join(kit, *name.split("."))
        if os.path.exists(target):  # a subpackage that came with its parent (not editable)
            continue
        if spec.submodule_search_locations:
            source = next(iter(spec.submodule_search_locations))
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(spec.origin, kit)
    for root, dirs, files in os.walk(kit):
        for entry in dirs + files:
            os.chmod(os.path.join(root, entry), 0o755)
    return kit


@contextlib.contextmanager
def made_user() -> Iterator[User]:
    """A system user of its own, without a home, removed after (its processes must be gone)."""
    if not system_python_matches():
        pytest.skip(f"needs {SYSTEM_PYTHON} of this test's Python version outside /root")
    name = f"stockade-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         "--user-group", name],
        check=True,
    )  # fmt: skip
    kit = _make_kit()
    try:
        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid, kit)
    finally:
        subprocess.run(["userdel", name], check=True)
        shutil.rmtree(kit)


def delegate(user: User) -> Iterator[User]:
    """What an administrator does so that `user` gets cgroup limits without systemd, as
    docs/rootless.md says: the same `user`, whose commands then run in its delegated cgroup."""
    support = cgroups.detect()
    if support.version == 1:
        yield from _delegate_v1(user, support)
    elif support.version == 2:
        yield from _delegate_v2(user)
    else:
        pytest.skip("no cgroup hierarchy is mounted")


def _delegate_v1(user: User, support: layout.CgroupSupport) -> Iterator[User]:
    """A `stockade` cgroup per controller owned by the user, under which the user's runs
    make their own cgroups."""
    made = []
    for path in sorted(set(support.paths.values())):
        if not os.path.isdir(path):
            os.mkdir(path)
            made.append(path)
        os.chown(path, user.uid, user.gid)
    try:
        yield user
    finally:
        for path in sorted(set(support.paths.values())):
            os.chown(path, 0, 0)
        for path in made:
            # Busy only while a concurrent root run uses the same parent; that run's own
            # cleanup removes the (again root-owned) parent once it is empty.
            with contextlib.suppress(OSError):
                os.rmdir(path)


def _delegate_v2(user: User) -> Iterator[User]:
    """What `sandbox doctor` tells root to do without systemd (delegation.py): a cgroup of the
    user's own under the root of the unified hierarchy (the root alone may both hold
    processes and hand controllers down), owned by the user with the files cgroup-v2.rst
    lists for delegation; the user's commands start in it."""
    mount = _v2_mount()
    cgroup = f"{mount}/stockade-test-{user.name}"
    root_control = f"{mount}/cgroup.subtree_control"
    added = [c for c in ("memory", "pids") if c not in _read(root_control).split()]
    for controller in added:
        _write(root_control, f"+{controller}")
    os.mkdir(cgroup)
    for path in (cgroup, *(f"{cgroup}/{name}" for name in V2_DELEGATED_FILES)):
        os.chown(path, user.uid, user.gid)
    try:
        yield dataclasses.replace(user, before=("sh", "-c", JOIN, cgroup))
    finally:
        _remove_tree(cgroup)
        for controller in added:  # as we found it, unless something else uses it by now
            with contextlib.suppress(OSError):
                _write(root_control, f"-{controller}")


# Once a run has been made there, the cgroup holds no processes (they moved into the leaf) and
# has controllers on for its children: the kernel lets no process join it, only the leaf.
JOIN = f"""
if [ -d "$0/{layout.LEAF}" ]; then echo $$ > "$0/{layout.LEAF}/cgroup.procs"
else echo $$ > "$0/cgroup.procs"; fi && exec "$@"
"""


def _v2_mount() -> str:
    with open("/proc/self/mountinfo") as file:
        mounts = layout.parse_mountinfo(file.read())
    return next(m.mount_point for m in mounts if m.version == 2)


def _remove_tree(cgroup: str) -> None:
    """rmdir the cgroup and what the runs left in it (the supervisors' leaf), deepest first;
    a supervisor that has replied may take a moment more to exit."""
    for root, _, _ in sorted(os.walk(cgroup), key=lambda walked: -len(walked[0])):
        for attempt in range(100):
            try:
                os.rmdir(root)
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or attempt == 99:
                    raise
                time.sleep(0.05)


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)

"""Rootless mode: the suite's core containment checks again, as an ordinary user, through
the CLI (run with setpriv), and the refusals when what rootless needs is missing; and the
network allowlist, against a test host of the test's own (as in test_network.py).

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

from stockade.kernel.cgroups import control as cgroups
from tests.integration.nethosts import (
    CROWD,
    OTHER_PORT,
    PORT,
    PROBE,
    QUICK,
    Remote,
    eventually,
    from_host,
    host_server,
    remote_host,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a test user")

SYSTEM_PYTHON = "/usr/bin/python3"
PACKAGES = ("stockade", "stockade.policies", "pydantic", "pydantic_core", "typing_extensions",
            "annotated_types", "typing_inspection", "pyseccomp", "pyroute2", "psutil")  # fmt: skip
NO_NESTING = Path(__file__).with_name("userns_without_nesting.py")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    kit: str  # where the package and its dependencies are, readable by the user

    def sandbox(
        self,
        *args: str,
        policy: str | None = None,
        wrap: tuple[str, ...] = (),
        groups: tuple[int, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        options = ("--policy", policy) if policy else ()
        command = ("-m", "stockade", args[0], *options, *args[1:])
        return self.python(*command, wrap=wrap, groups=groups)

    def python(
        self, *args: str, wrap: tuple[str, ...] = (), groups: tuple[int, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        """The system python3 as this user (with these supplementary groups), with the kit on
        its path."""
        command = [
            *wrap,
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"PYTHONPATH={self.kit}",
            SYSTEM_PYTHON,
            *args,
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


BEST_EFFORT = f"/tmp/rootless-test-best-effort-{os.getpid()}.toml"  # not a run dir's name


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


# .stockade: the links to the run's interpreter (python3, ...)
RUNTIME_TOP_LEVEL = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp",
                     "usr", "workspace", ".stockade"}  # fmt: skip
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
    # Only what it shares without subordinate ids (test_without_subordinate_ids_...)
    assert [w for w in result["warnings"] if "per-user counts" not in w] == []


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


PREPARED_RUNS = """
import glob, os, tempfile, time
from stockade import Sandbox

def waiting():  # run dirs of this user: the run being prepared
    paths = glob.glob(os.path.join(tempfile.gettempdir(), "stockade-*"))
    return [path for path in paths if os.stat(path).st_uid == os.getuid()]

with Sandbox() as box:
    outputs = [box.run(["sh", "-c", "id -u; cat f"], files={"f": str(n)}).stdout for n in range(2)]
    for _ in range(500):  # the third run is prepared once the second has ended
        if waiting():
            break
        time.sleep(0.01)
    prepared = bool(waiting())
    outputs += [box.run(["sh", "-c", "id -u; cat f"], files={"f": str(n)}).stdout for n in (2, 3)]
print(prepared, outputs)
"""


def test_prepared_runs_rootless(user: User, delegated: None) -> None:
    done = user.python("-c", PREPARED_RUNS)
    assert done.returncode == 0, done.stderr
    outputs = [f"65534\n{n}" for n in range(4)]
    assert done.stdout.strip() == f"True {outputs}"


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
    assert checks["overlayfs"]["available"]  # in the user's own user namespace, as a run
    assert done.returncode == 0 and report["ok"]


def test_doctor_without_delegation_says_how(user: User) -> None:
    done = user.sandbox("doctor")
    assert done.returncode == 1
    assert "MISSING cgroup.create" in done.stdout and "Delegate=yes" in done.stdout


# -- the network allowlist, rootless ---------------------------------------------------------
#
# The test host (nethosts.py): a network namespace joined to the host by a veth pair, with
# addresses A and its neighbour B, and a small server on two ports. Only it, the host's
# loopback and the host's end of the veth are addressed.


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    if not shutil.which("ip"):
        pytest.skip("needs iproute2's `ip` for the test host")
    with remote_host("r", offset=75, ula="fd5b") as host:
        yield host


NETWORKED = f"/tmp/rootless-test-networked-{os.getpid()}.toml"


@pytest.fixture
def networked() -> Iterator[str]:
    """The networked policy, without a cgroup (delegation is not what is tested here), and
    with at most 2 relayed connections at once."""
    with open(NETWORKED, "w") as file:
        file.write(
            'name = "rootless-networked"\n[limits]\ncgroups = "best_effort"\ntimeout = "20s"\n'
            "[network]\nmax_connections = 2\n"
        )
    os.chmod(NETWORKED, 0o644)
    yield NETWORKED
    os.unlink(NETWORKED)


def _processes_of(user: User) -> list[int]:
    import psutil

    found = []
    for process in psutil.process_iter(["uids", "status"]):
        with contextlib.suppress(psutil.Error):
            if process.info["uids"].real == user.uid and process.info["status"] != "zombie":
                found.append(process.pid)
    return found


def probe(
    user: User, policy: str, allow: list[str], targets: list[tuple[str, int]], **kwargs: object
) -> dict[str, str]:
    """Each target's answer from inside a rootless run allowing `allow`; every answer came
    quickly, and the run left no process of the user behind."""
    flags = [arg for entry in allow for arg in ("--allow-net", entry)]
    result = _json(
        user.sandbox(
            "run",
            "--json",
            *flags,
            "--",
            "python3",
            "-c",
            PROBE,
            json.dumps(targets),
            policy=policy,
            **kwargs,  # type: ignore[arg-type]
        )
    )
    assert result["status"] == "ok", result
    found = json.loads(result["stdout"])
    slow = {target: secs for target, (_, secs) in found.items() if secs > QUICK}
    assert not slow, f"answers took too long (a hang, not a refusal): {slow}"
    assert eventually(lambda: not _processes_of(user)), "the run left processes behind"
    return {target: answer for target, (answer, _) in found.items()}


def test_allowlist_rootless_reaches_only_what_it_lists(
    user: User, remote: Remote, networked: str
) -> None:
    assert from_host(remote.a, OTHER_PORT) == f"{remote.a} {OTHER_PORT}"
    assert from_host(remote.b, PORT) == f"{remote.b} {PORT}"
    allow, targets = [f"{remote.a}:{PORT}"], [(remote.a, PORT), (remote.a, OTHER_PORT),
                                             (remote.b, PORT), (remote.host_ip, PORT),
                                             ("127.0.0.1", PORT)]  # fmt: skip
    if remote.a6:
        assert from_host(remote.a6, OTHER_PORT) == f"{remote.a6} {OTHER_PORT}"
        allow.append(f"[{remote.a6}]:{PORT}")
        targets += [(remote.a6, PORT), (remote.a6, OTHER_PORT)]
    answers = probe(user, networked, allow, targets)
    expected = {
        f"{remote.a} {PORT}": f"{remote.a} {PORT}",
        f"{remote.a} {OTHER_PORT}": "ECONNREFUSED",
        f"{remote.b} {PORT}": "ENETUNREACH",
        f"{remote.host_ip} {PORT}": "ENETUNREACH",
        f"127.0.0.1 {PORT}": "ECONNREFUSED",
    }
    if remote.a6:
        expected[f"{remote.a6} {PORT}"] = f"{remote.a6} {PORT}"
        expected[f"{remote.a6} {OTHER_PORT}"] = "ECONNREFUSED"
    assert answers == expected


def test_a_network_with_a_port_rootless_never_reaches_the_host(
    user: User, remote: Remote, networked: str
) -> None:
    """A network's port is served by a wildcard listener, which also takes that port of the
    run's own loopback: the relay's re-check must refuse those, and never reach the host."""
    with host_server() as port:
        assert from_host("127.0.0.1", port) == from_host(remote.host_ip, port) == "host"
        answers = probe(
            user,
            networked,
            [f"{remote.network}:{PORT}", f"{remote.network}:{port}"],
            [
                (remote.a, PORT),
                (remote.b, PORT),
                (remote.b, OTHER_PORT),
                ("127.0.0.1", port),
                (remote.host_ip, port),
            ],
        )
    assert answers[f"{remote.a} {PORT}"] == f"{remote.a} {PORT}"
    assert answers[f"{remote.b} {PORT}"] == f"{remote.b} {PORT}"
    assert answers[f"{remote.b} {OTHER_PORT}"] == "ECONNREFUSED"
    assert answers[f"127.0.0.1 {port}"] in ("EOF", "ECONNRESET")  # the relay's reset
    assert answers[f"{remote.host_ip} {port}"] == "ENETUNREACH"


def test_an_entry_without_a_port_is_refused_rootless_before_anything_starts(
    user: User, remote: Remote, networked: str
) -> None:
    for entry in (remote.a, remote.network):
        done = user.sandbox("run", "--allow-net", entry, "--", "true", policy=networked)
        assert done.returncode == 125, done
        assert f"network.allow: {entry!r} allows every port" in done.stderr
        assert "give a port, such as" in done.stderr and ":443" in done.stderr


def test_max_connections_rootless(user: User, remote: Remote, networked: str) -> None:
    result = _json(
        user.sandbox(
            "run",
            "--json",
            "--allow-net",
            f"{remote.a}:{PORT}",
            "--",
            "python3",
            "-c",
            CROWD,
            remote.a,
            str(PORT),
            "2",
            policy=networked,
        )
    )
    greeting = f"{remote.a} {PORT}"
    assert result["status"] == "ok", result
    assert result["stdout"].splitlines() == [
        f"held {greeting}",
        f"held {greeting}",
        "over refused",
        f"after one closed {greeting}",
    ]
    assert any("max_connections (2)" in warning for warning in result["warnings"])


HOLD = r"""
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
conn.makefile("rb").readline()
print("connected", flush=True)
time.sleep(60)
"""


def test_a_timed_out_rootless_run_leaves_nothing(
    user: User, remote: Remote, networked: str
) -> None:
    result = _json(
        user.sandbox(
            "run",
            "--json",
            "--timeout",
            "3",
            "--allow-net",
            f"{remote.a}:{PORT}",
            "--",
            "python3",
            "-c",
            HOLD,
            remote.a,
            str(PORT),
            policy=networked,
        )
    )
    assert result["status"] == "timeout" and result["stdout"] == "connected\n", result
    assert eventually(lambda: remote.count() == 0), "the relayed connection outlived the run"
    assert eventually(lambda: not _processes_of(user)), "the run left processes behind"


def test_a_failed_rootless_setup_stops_the_relay(
    user: User, remote: Remote, networked: str
) -> None:
    """The relay is forked before the user namespace is entered: when entering it fails
    (user.max_user_namespaces=0), the run is refused and the relay is gone too."""
    wrap = (sys.executable, str(NO_NESTING), str(user.uid), str(user.gid))
    done = user.sandbox(
        "run", "--allow-net", f"{remote.a}:{PORT}", "--", "true", policy=networked, wrap=wrap
    )
    assert done.returncode == 125 and "user namespaces" in done.stderr, done
    assert eventually(lambda: not _processes_of(user)), "the relay outlived the run"


def test_names_are_pinned_rootless(
    user: User, remote: Remote, networked: str, tmp_path: Path
) -> None:
    """The user's resolver (a private /etc/hosts, bound by root around the user's command)
    knows the test host; the run knows only the pinned name, and reaches it."""
    hosts = tmp_path / "hosts"
    hosts.write_text(
        f"127.0.0.1 localhost\n{remote.a} stockade-remote.test\n"
        f"{remote.b} stockade-neighbour.test\n"
    )
    hosts.chmod(0o644)
    bind = 'mount --bind "$0" /etc/hosts && exec "$@"'
    wrap = ("unshare", "--mount", "--propagation", "private", "sh", "-c", bind, str(hosts))
    inside = (
        "import socket; print(open('/etc/hosts').read().strip().splitlines()[-1]);"
        "c = socket.create_connection(('stockade-remote.test', 8080), timeout=5);"
        "print(c.makefile('rb').readline().decode().strip())"
    )
    result = _json(
        user.sandbox(
            "run",
            "--json",
            "--allow-net",
            f"stockade-remote.test:{PORT}",
            "--",
            "python3",
            "-c",
            inside,
            policy=networked,
            wrap=wrap,
        )
    )
    assert result["status"] == "ok", result
    assert result["stdout"].splitlines() == [
        f"{remote.a}\tstockade-remote.test",
        f"{remote.a} {PORT}",
    ]


EVERY_MODE = r"""
import glob, os
from stockade import Sandbox, UnsupportedError
def attempts(box):
    yield "run", lambda: box.run(["true"])
    yield "run_code", lambda: box.run_code("print(1)")
    yield "start", lambda: box.start(["true"])
    yield "session", lambda: box.session()
    yield "pool", lambda: Sandbox(pool=1)
box = Sandbox()
for mode, attempt in attempts(box):
    try:
        attempt()
        print(mode, "ran")
    except UnsupportedError as error:
        print(mode, "Delegate=yes" in error.hint)
mine = [p for p in glob.glob("/tmp/stockade-*") if os.stat(p).st_uid == os.getuid()]
print("left", mine)
"""


def test_every_mode_raises_unsupported_without_delegation_before_anything_runs(
    user: User,
) -> None:
    """Without a delegated cgroup (the default policy requires one), each way into the
    sandbox raises UnsupportedError with the delegation hint, and makes no run dir."""
    done = user.python("-c", EVERY_MODE)
    assert done.returncode == 0, done.stderr
    modes = ("run", "run_code", "start", "session", "pool")
    assert done.stdout.splitlines() == [*(f"{mode} True" for mode in modes), "left []"]


def test_the_command_refuses_without_delegation_with_125_and_the_hint(user: User) -> None:
    for json_flag in ((), ("--json",)):
        done = user.sandbox("run", *json_flag, "--", "true")
        assert done.returncode == 125, done
        assert "sandbox: cgroup" in done.stderr and "Delegate=yes" in done.stderr


ALLOWLIST_WITHOUT_BPF = r"""
import glob
from stockade import Policy, Sandbox, UnsupportedError
policy = Policy.load("networked").override(allow_net=["192.0.2.1:80"], cgroups="best_effort")
before = set(glob.glob("/tmp/stockade-*"))
try:
    Sandbox(policy).run(["true"])
    print("ran")
except UnsupportedError as error:
    print(error.missing.split(" (")[0], "|", error.hint)
print("left", sorted(set(glob.glob("/tmp/stockade-*")) - before))
"""


def test_an_allowlist_without_sk_lookup_raises_before_anything_runs(user: User) -> None:
    """Root in a user namespace of its own may not load BPF: a machine without sk_lookup,
    as far as a run can tell. The allowlist is refused up front with the hint."""
    wrap = (sys.executable, str(NO_NESTING), str(user.uid), str(user.gid))  # we stay uid 0
    done = subprocess.run(
        [*wrap, "env", "-i", f"PYTHONPATH={user.kit}", SYSTEM_PYTHON, "-c", ALLOWLIST_WITHOUT_BPF],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    missing, left = done.stdout.splitlines()
    assert missing.startswith("BPF sk_lookup, which a network allowlist needs | Linux >= 5.9")
    assert left == "left []"


def test_best_effort_without_writing_toml_says_what_is_weaker(user: User) -> None:
    """No delegation, no TOML: the built-in policy or the flag runs on rlimits, and the
    command says which limits are weaker."""
    for done in (
        user.sandbox("run", "--", "python3", "-c", "print(6 * 7)", policy="best_effort"),
        user.sandbox("run", "--cgroups", "best_effort", "--", "python3", "-c", "print(6 * 7)"),
    ):
        assert (done.returncode, done.stdout) == (0, "42\n"), done
        assert "sandbox: warning: no cgroup" in done.stderr
        assert "sandbox: warning: memory: RLIMIT_AS" in done.stderr


@pytest.fixture
def subordinate(user: User) -> Iterator[int]:
    """What useradd does for a new user: a range of subordinate uids and gids of their own.
    Yields its first id; the files are as before afterwards."""
    from stockade.kernel import uids

    if uids.mapper("newuidmap") is None or uids.mapper("newgidmap") is None:
        pytest.skip("newuidmap and newgidmap (package uidmap) are not installed")
    first = 7_000_000 + (os.getpid() % 1000) * 65_536
    saved = {}
    for path in ("/etc/subuid", "/etc/subgid"):
        saved[path] = Path(path).read_text() if os.path.exists(path) else None
        with open(path, "a") as file:
            file.write(f"{user.name}:{first}:65536\n")
    try:
        yield first
    finally:
        for path, text in saved.items():
            if text is None:
                os.unlink(path)
            else:
                Path(path).write_text(text)
        shutil.rmtree(f"/tmp/stockade-uids-{user.uid}", ignore_errors=True)


def test_each_sandbox_maps_to_a_subordinate_uid_of_its_own(
    user: User, delegated: None, subordinate: int
) -> None:
    """Without root, with a subuid range: the workload is a host uid of that range (what the
    kernel counts per user), not the caller's, and nothing says the counts are shared."""
    show = "cat /proc/self/uid_map /proc/self/gid_map; grep Groups /proc/self/status"
    # The caller is also in a host group (1, daemon's), which the workload must not keep.
    result = _json(user.sandbox("run", "--json", "--", "sh", "-c", show, groups=(1,)))
    assert result["status"] == "ok", result
    *lines, groups = result["stdout"].splitlines()
    assert groups.split() == ["Groups:"], result  # none: the caller's group was dropped
    maps = [line.split() for line in lines]
    outer = {int(inner): int(host) for inner, host, _ in maps if inner != "0"}
    assert len(outer) == 1 and subordinate <= next(iter(outer.values())) < subordinate + 65_536
    assert not any("per-user counts" in w for w in result.get("warnings", [])), result


def test_without_subordinate_ids_the_shared_counts_are_said(user: User, delegated: None) -> None:
    result = _json(user.sandbox("run", "--json", "--", "true"))
    assert result["status"] == "ok", result
    assert any("shares the kernel's per-user counts" in w for w in result["warnings"]), result

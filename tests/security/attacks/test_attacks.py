"""The attack catalogue: real programs that each try one escape or abuse, run on the default
policy through the public API (and some through the CLI), each asserting that the attack
failed AND that the machine is unharmed afterwards.

One program per file under `programs/<category>/`, in Python, shell or C (compiled here with
the machine's gcc). A program prints `ESCAPED <how>` for every way it got through, and `HELD`
once it has tried everything and nothing got through; a program that crashes or is cut short
before its verdict fails its test, so no attack passes by not running. Its leading comment
block is its entry in the catalogue:

    # summary: what it tries (required)
    # expect:  statuses the run may end with (default: ok)
    #          (`expect` and `verdict` may differ by cgroup version: `v1=ok v2=memory_limit`)
    # limits:  Policy.override flags for this run, e.g. `timeout=3 memory=64M`
    # harness: what the host side does around the run (see HARNESSES; default: plain)
    # via:     api, cli or both (default: api)
    # verdict: none, when the sandbox is meant to kill the program before it can print HELD
    # check:   a Python expression over the outcome `r` and the policy `p` that must hold
    #          (`T` scales wall times: 1, or STOCKADE_TEST_SLOWDOWN under emulation)
    # control: host, to also run the probe unsandboxed and see it succeed there (only for
    #          harmless probes): it proves the probe can tell an escape when it sees one;
    #          shared-uid, to run it again with every sandbox of one uid (process.uid set)
    #          and see it get through: it proves a uid of each sandbox's own is what holds
    # hole:    a known hole: the test stays, as xfail(strict=True), until the core is fixed

A value may go on over the next comment lines, indented by three spaces or more.

Every test gets a uid range of its own (the default policy's only change), from which each of
its sandboxes takes its own uid, so "no process left" and "no file written on the host" are
exact: nothing owned by those uids may exist afterwards. The autouse leak check of
tests/conftest.py adds fds, mounts, run dirs, cgroups and children.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from stockade import Policy, Result, Sandbox
from stockade.kernel.cgroups import control as cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")

HERE = Path(__file__).parent
PROGRAMS = HERE / "programs"
REPO = HERE.parents[2]
CATEGORIES = ("filesystem", "privilege", "resources", "information", "supervisor", "network")
LANGUAGES = {".py": "python", ".sh": "sh", ".c": "c"}
CGROUP_VERSION = cgroups.detect().version
# How much slower than native this machine runs the tests: the v2 VM job sets it (software
# emulation). It lengthens the runs' timeouts and the wall times the checks allow, no more.
SLOWDOWN = float(os.environ.get("STOCKADE_TEST_SLOWDOWN", "1"))
MARKER = "ESCAPED"
VERDICT = "HELD"
HEADER_KEYS = {
    "summary",
    "expect",
    "limits",
    "harness",
    "via",
    "verdict",
    "check",
    "control",
    "hole",
}
STATUSES = {"ok", "nonzero_exit", "timeout", "memory_limit", "signaled", "setup_failed"}
# Host places a run's stray file would most likely land in; scanned one level deep (cheap).
HOST_DIRS = (
    "/", "/tmp", "/var/tmp", "/dev/shm", "/root", "/home", "/etc", "/run", "/opt", "/srv",
    "/usr/local", "/var", "/usr", "/usr/bin", "/usr/lib", str(REPO),
)  # fmt: skip


# --------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Attack:
    id: str
    category: str
    path: Path
    summary: str
    expect: frozenset[str] = frozenset({"ok"})
    limits: dict[str, str] = field(default_factory=dict)
    harness: str = "plain"
    via: tuple[str, ...] = ("api",)
    verdict: bool = True
    check: str | None = None
    control: str | None = None
    hole: str | None = None

    @property
    def language(self) -> str:
        return LANGUAGES[self.path.suffix]


def read_header(path: Path) -> dict[str, str]:
    prefix = "//" if path.suffix == ".c" else "#"
    header: dict[str, str] = {}
    last = None
    for line in path.read_text().splitlines():
        if line.startswith("#!"):
            continue
        if not line.startswith(prefix):
            break
        text = line[len(prefix) :]
        if last is not None and text.startswith("   "):  # a continuation line
            header[last] += " " + text.strip()
            continue
        key, sep, value = text.strip().partition(":")
        if sep and key.strip() in HEADER_KEYS:
            last = key.strip()
            header[last] = value.strip()
    return header


def for_this_machine(value: str) -> str:
    """A header value written per cgroup version (`v1=ok v2=memory_limit`: on v2, socket
    buffers count against memory.max) -> this machine's part; any other value as it is."""
    words = value.split()
    if not any(re.fullmatch(r"v\d=\S+", word) for word in words):
        return value
    return " ".join(w.split("=", 1)[1] for w in words if w.startswith(f"v{CGROUP_VERSION}="))


def load_attack(path: Path) -> Attack:
    header = read_header(path)
    for key in ("expect", "verdict"):
        if key in header:
            header[key] = for_this_machine(header[key])
    unknown = set(header) - HEADER_KEYS
    assert not unknown and "summary" in header, f"{path}: bad header {header}"
    expect = frozenset(header.get("expect", "ok").split())
    assert expect <= STATUSES, f"{path}: unknown status in {expect}"
    limits = dict(item.split("=", 1) for item in header.get("limits", "").split())
    return Attack(
        id=f"{path.parent.name}/{path.stem}",
        category=path.parent.name,
        path=path,
        summary=header["summary"],
        expect=expect,
        limits=limits,
        harness=header.get("harness", "plain"),
        via=tuple(v.strip() for v in header.get("via", "api").split(",")),
        verdict=header.get("verdict", "held") != "none",
        check=header.get("check"),
        control=header.get("control"),
        hole=header.get("hole"),
    )


def catalogue() -> list[Attack]:
    paths = sorted(p for p in PROGRAMS.glob("*/*") if p.suffix in LANGUAGES)
    return [load_attack(p) for p in paths]


ATTACKS = catalogue()


def _params() -> list[Any]:
    params = []
    for attack in ATTACKS:
        marks = []
        if attack.hole:
            marks.append(pytest.mark.xfail(strict=True, reason=f"HOLE: {attack.hole}"))
        for via in attack.via:
            test_id = attack.id if len(attack.via) == 1 else f"{attack.id}[{via}]"
            params.append(pytest.param(attack, via, id=test_id, marks=marks))
    return params


# --------------------------------------------------------------------------- running one


@dataclass
class Outcome:
    """What a run did, from the API's Result or the CLI's JSON alike."""

    status: str
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_len: int = 0
    stderr_len: int = 0
    wall_time: float = 0.0
    cpu_time: float = 0.0
    peak_memory: int = 0
    error: str | None = None

    @classmethod
    def of_result(cls, r: Result) -> Outcome:
        return cls(
            r.status.value, r.exit_code, r.signal, r.stdout, r.stderr,
            r.stdout_truncated, r.stderr_truncated, len(r.stdout_bytes), len(r.stderr_bytes),
            r.wall_time, r.cpu_time, r.peak_memory, r.error,
        )  # fmt: skip

    @classmethod
    def of_json(cls, d: dict[str, Any]) -> Outcome:
        return cls(
            d["status"], d.get("exit_code"), d.get("signal"), d.get("stdout", ""),
            d.get("stderr", ""), d.get("stdout_truncated", False),
            d.get("stderr_truncated", False), len(d.get("stdout", "").encode()),
            len(d.get("stderr", "").encode()), d.get("wall_time", 0.0), d.get("cpu_time", 0.0),
            d.get("peak_memory", 0), d.get("error"),
        )  # fmt: skip

    def __str__(self) -> str:
        return (
            f"status={self.status} exit={self.exit_code} signal={self.signal} "
            f"wall={self.wall_time:.2f}s error={self.error}\n"
            f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )


_compiled: dict[Path, bytes] = {}


def compiled(source: Path) -> bytes:
    if source not in _compiled:
        gcc = shutil.which("gcc")
        if gcc is None:
            pytest.skip("gcc is not installed: cannot build the C attack programs")
        out = Path(tempfile.mkdtemp(prefix="attack-cc-"))
        try:
            binary = out / source.stem
            flags = ["-O1", "-pthread", "-w"]
            subprocess.run([gcc, *flags, "-o", binary, source], check=True, capture_output=True)
            _compiled[source] = binary.read_bytes()
        finally:
            shutil.rmtree(out)
    return _compiled[source]


def program_files(attack: Attack) -> tuple[dict[str, bytes], list[str]]:
    """The files a run gets and the argv that starts the program, in /workspace."""
    if attack.language == "python":
        return {"attack.py": attack.path.read_bytes()}, ["python3", "attack.py"]
    if attack.language == "sh":
        return {"attack.sh": attack.path.read_bytes()}, ["sh", "attack.sh"]
    start = 'chmod 700 attack && exec ./attack "$@"'
    return {"attack": compiled(attack.path)}, ["sh", "-c", start, "attack"]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def policy_toml(policy: Policy) -> str:
    lines = []
    for key, value in policy.model_dump().items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {toml_value(value)}")
    for key, value in policy.model_dump().items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items() if v is not None]
    return "\n".join(lines) + "\n"


@dataclass
class Ctx:
    """What a harness works with: the attack, its policy, a temp dir, and `launch`."""

    attack: Attack
    policy: Policy
    tmp: Path
    via: str
    on_host: bool = False  # the control run: the probe runs unsandboxed

    def launch(
        self,
        args: list[str],
        *,
        policy: Policy | None = None,
        files: dict[str, bytes] | None = None,
        stdin: bytes | int = b"",
        stdout_fd: int | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> Outcome:
        own, argv = program_files(self.attack)
        files = {**(files or {}), **own}
        policy = policy or self.policy
        if self.on_host:
            return self._launch_on_host(argv, args, files, stdin, stdout_fd, pass_fds)
        if self.via == "cli":
            return self._launch_cli(policy, argv + args, files, stdin, pass_fds)
        assert not pass_fds, "inherited fds are handed over through the CLI"
        box = Sandbox(policy)
        return Outcome.of_result(
            box.run(argv + args, files=files, stdin=stdin, stdout_fd=stdout_fd)
        )

    def _launch_cli(
        self,
        policy: Policy,
        argv: list[str],
        files: dict[str, bytes],
        stdin: bytes | int,
        pass_fds: tuple[int, ...],
    ) -> Outcome:
        spec = self.tmp / f"policy-{uuid.uuid4().hex}.toml"
        spec.write_text(policy_toml(policy))
        command = [sys.executable, "-m", "stockade", "run", "--json", "--policy", str(spec)]
        for name, content in files.items():
            source = self.tmp / f"file-{uuid.uuid4().hex}"
            source.write_bytes(content)
            command += ["--file", f"{source}:{name}"]
        done = subprocess.run(
            [*command, "--", *argv],
            input=stdin if isinstance(stdin, bytes) else None,
            stdin=stdin if isinstance(stdin, int) else None,
            capture_output=True,
            pass_fds=pass_fds,
            cwd=REPO,
            timeout=120,
        )
        lines = done.stdout.decode().splitlines()
        assert done.returncode == 0 and len(lines) == 1, (done.returncode, done.stdout, done.stderr)
        return Outcome.of_json(json.loads(lines[0]))

    def _launch_on_host(
        self,
        argv: list[str],
        args: list[str],
        files: dict[str, bytes],
        stdin: bytes | int,
        stdout_fd: int | None,
        pass_fds: tuple[int, ...],
    ) -> Outcome:
        work = self.tmp / "host-control"
        work.mkdir(exist_ok=True)
        for name, content in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(content)
        if argv[0] == "python3":
            argv = [sys.executable, *argv[1:]]
        started = time.monotonic()
        done = subprocess.run(
            argv + args,
            cwd=work,
            input=stdin if isinstance(stdin, bytes) else None,
            stdin=stdin if isinstance(stdin, int) else None,
            stdout=stdout_fd if stdout_fd is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            timeout=60,
        )
        out = (done.stdout or b"").decode(errors="replace")
        status = "ok" if done.returncode == 0 else "nonzero_exit"
        return Outcome(
            status, done.returncode, None, out, done.stderr.decode(errors="replace"),
            wall_time=time.monotonic() - started,
        )  # fmt: skip


# --------------------------------------------------------------------------- harnesses


def plain(ctx: Ctx) -> Outcome:
    return ctx.launch([])


@dataclass
class HostSecret:
    token: str
    files: list[Path]
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def host_secret() -> Iterator[HostSecret]:
    """A token the sandbox must never see: in host files, in the caller's environment, and
    in the command line and environment of a host process."""
    token = f"stockade-secret-{uuid.uuid4().hex}"
    places = ["/root", "/home", "/var/tmp", "/etc", "/tmp", "/run", "/opt", "/dev/shm"]
    files = []
    for place in places:
        with contextlib.suppress(OSError):
            os.makedirs(place, exist_ok=True)
            path = Path(place) / token
            path.write_text(token)
            files.append(path)
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", token],
        env={**os.environ, "STOCKADE_SECRET": token},
    )
    old = os.environ.get("STOCKADE_SECRET")
    os.environ["STOCKADE_SECRET"] = token
    try:
        yield HostSecret(token, files, process)
    finally:
        if old is None:
            del os.environ["STOCKADE_SECRET"]
        else:
            os.environ["STOCKADE_SECRET"] = old
        process.kill()
        process.wait()
        for path in files:
            path.unlink()


def _host_fact(path: str) -> str:
    try:
        return Path(path).read_text().strip() or "-"
    except OSError:
        return "-"


def secret(ctx: Ctx) -> Outcome:
    """argv: token, the host's hostname, the host's machine-id."""
    with host_secret() as s:
        facts = [socket.gethostname(), _host_fact("/etc/machine-id")]
        return ctx.launch([s.token, *facts])


def victim_process(ctx: Ctx) -> Outcome:
    """argv: the pid of a host process, the pid of the test runner. Both must survive."""
    victim = subprocess.Popen(["sleep", "120"])
    try:
        outcome = ctx.launch([str(victim.pid), str(os.getpid())])
        time.sleep(0.1)
        assert victim.poll() is None, "a host process was killed from inside the sandbox"
        return outcome
    finally:
        victim.kill()
        victim.wait()


def _serve(server: socket.socket, banner: bytes, stop: threading.Event) -> None:
    server.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except OSError:
            continue
        with conn, contextlib.suppress(OSError):
            conn.sendall(banner)


@contextlib.contextmanager
def serving(servers: list[socket.socket], banner: bytes) -> Iterator[None]:
    stop = threading.Event()
    threads = [threading.Thread(target=_serve, args=(s, banner, stop)) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for server in servers:
            server.close()


def host_listener(ctx: Ctx) -> Outcome:
    """argv: a TCP port the host listens on (127.0.0.1 and ::1), the banner it sends."""
    token = f"stockade-banner-{uuid.uuid4().hex}"
    v4 = socket.create_server(("127.0.0.1", 0))
    port = v4.getsockname()[1]
    servers = [v4]
    with contextlib.suppress(OSError):
        servers.append(socket.create_server(("::1", port), family=socket.AF_INET6))
    with serving(servers, token.encode()):
        return ctx.launch([str(port), token])


def host_abstract(ctx: Ctx) -> Outcome:
    """argv: the name of an abstract unix socket the host listens on, the banner it sends."""
    token = f"stockade-banner-{uuid.uuid4().hex}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(f"\0{token}")
    server.listen()
    with serving([server], token.encode()):
        return ctx.launch([token, token])


class LiveRun:
    """A run in the background, its stdout forwarded to a pipe we read and its stdin a pipe
    we hold: the program waits for EOF on stdin, so it lives until `finish()`."""

    def __init__(self, ctx: Ctx, args: list[str]) -> None:
        self.stdin_r, self.stdin_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        self.seen = b""
        self.pool = ThreadPoolExecutor(1)
        self.future = self.pool.submit(ctx.launch, args, stdin=self.stdin_r, stdout_fd=self.out_w)

    def wait_for(self, word: bytes, seconds: float = 30) -> bytes:
        """Everything the program printed up to `word`."""
        deadline = time.monotonic() + seconds
        while word not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {word!r} from the run in {seconds} s; got {self.seen!r}"
            if select.select([self.out_r], [], [], left)[0]:
                chunk = os.read(self.out_r, 4096)
                assert chunk, f"the run ended before {word!r}; got {self.seen!r}"
                self.seen += chunk
        return self.seen

    def finish(self) -> Outcome:
        self._close_stdin()
        outcome = self.future.result(timeout=60)
        os.set_blocking(self.out_r, False)
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.out_r, 65536):
                self.seen += chunk
        outcome.stdout = self.seen.decode(errors="replace") + outcome.stdout
        return outcome

    def _close_stdin(self) -> None:
        if self.stdin_w >= 0:
            os.close(self.stdin_w)
            self.stdin_w = -1

    def close(self) -> None:
        self._close_stdin()
        with contextlib.suppress(Exception):
            self.future.result(timeout=60)
        self.pool.shutdown()
        for fd in (self.stdin_r, self.out_r, self.out_w):
            os.close(fd)


@contextlib.contextmanager
def live_run(ctx: Ctx, args: list[str]) -> Iterator[LiveRun]:
    run = LiveRun(ctx, args)
    try:
        yield run
    finally:
        run.close()


def concurrent(ctx: Ctx) -> Outcome:
    """Two runs at once on the same policy: `victim TOKEN` plants the token (or holds some
    shared state), prints READY and waits; then `attacker TOKEN` looks for it."""
    token = f"stockade-run-{uuid.uuid4().hex}"
    with live_run(ctx, ["victim", token]) as victim_run:
        victim_run.wait_for(b"READY")
        attacker = ctx.launch(["attacker", token])
        victim = victim_run.finish()
    assert victim.status == "ok" and "READY" in victim.stdout, f"victim run:\n{victim}"
    return attacker


def listen_probe(ctx: Ctx) -> Outcome:
    """The program listens on a TCP port inside and prints `PORT n`; the host then tries to
    reach that port on its own loopback, and must not get the program's banner."""
    token = f"stockade-inbound-{uuid.uuid4().hex}"
    with live_run(ctx, [token]) as run:
        line = run.wait_for(b"\n").decode()
        port = int(line.split("PORT", 1)[1].split()[0])
        reached = []
        for host in ("127.0.0.1", "::1"):
            with (
                contextlib.suppress(OSError),
                socket.create_connection((host, port), timeout=1) as conn,
            ):
                conn.settimeout(1)
                if token.encode() in conn.recv(200):
                    reached.append(host)
        outcome = run.finish()
    assert not reached, f"the host reached a server inside the sandbox via {reached}"
    return outcome


def inherited_fds(ctx: Ctx) -> Outcome:
    """The CLI is started with two extra inheritable fds: a host directory holding a file
    named after the token, and that file open read-write. argv: token."""
    token = f"stockade-fd-{uuid.uuid4().hex}"
    secret_dir = ctx.tmp / "fd-secret"
    secret_dir.mkdir()
    (secret_dir / token).write_text(token)
    dir_fd = os.open(secret_dir, os.O_RDONLY | os.O_DIRECTORY)
    file_fd = os.open(secret_dir / token, os.O_RDWR)
    try:
        return ctx.launch([token], pass_fds=(dir_fd, file_fd))
    finally:
        os.close(dir_fd)
        os.close(file_fd)
        assert (secret_dir / token).read_text() == token
        assert sorted(os.listdir(secret_dir)) == [token]


def _tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    found = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        found[str(path)] = (st.st_mode, st.st_uid, data)
    return found


def judge0(ctx: Ctx) -> Outcome:
    """Judge0 CVE-2024-28185: the run gets input files, and the program replaces them (and
    plants more) with links to a host file and directory. argv: the victim file, its dir.
    The host side must be exactly as before."""
    victim_dir = ctx.tmp / "victim"
    victim_dir.mkdir()
    victim = victim_dir / "precious.txt"
    victim.write_text("intact")
    before = _tree(victim_dir)
    files = {"data.csv": b"a,b\n1,2\n", "sub/dir/input.txt": b"x", "main.py": b"print(1)\n"}
    outcome = ctx.launch([str(victim), str(victim_dir)], files=files)
    assert _tree(victim_dir) == before, "the host victim changed"
    return outcome


SETUID_HELPER = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("euid=%d\n", (int)geteuid()); return 0; }
"""


def setuid_helper(ctx: Ctx) -> Outcome:
    """A setuid-root program of the host's, in a directory bound read-only into the run (the
    policy's runtime binds plus this one). argv: its path."""
    gcc = shutil.which("gcc")
    if gcc is None or shutil.which("setpriv") is None:
        pytest.skip("gcc or setpriv (util-linux) is not installed: no setuid helper")
    # Outside pytest's 0700 temp tree and not under /tmp (the run has its own /tmp there).
    bindir = Path(tempfile.mkdtemp(prefix="attack-setuid-", dir="/var/tmp"))
    try:
        bindir.chmod(0o755)
        source = bindir / "helper.c"
        source.write_text(SETUID_HELPER)
        helper = bindir / "whoami-setuid"
        subprocess.run([gcc, "-o", helper, source], check=True)
        os.chown(helper, 0, 0)
        os.chmod(helper, 0o4755)
        some_uid = ctx.policy.process.uid_range.split("-")[0]
        unsandboxed = subprocess.run(
            ["setpriv", f"--reuid={some_uid}", "--clear-groups", str(helper)],
            capture_output=True,
            text=True,
        )
        assert unsandboxed.stdout.strip() == "euid=0", f"the helper is not setuid: {unsandboxed}"
        data = ctx.policy.model_dump()
        data["filesystem"]["readonly"] = [*data["filesystem"]["readonly"], str(bindir)]
        return ctx.launch([str(helper)], policy=Policy.from_dict(data))
    finally:
        shutil.rmtree(bindir)


CALLER = """
import sys
from stockade import Policy, Sandbox
policy, program, token = sys.argv[1], sys.argv[2], sys.argv[3]
result = Sandbox(Policy.load(policy)).run(
    ["python3", "attack.py", token], files={"attack.py": open(program, "rb").read()}
)
print(result.to_json())
"""


def caller_argv(ctx: Ctx) -> Outcome:
    """An application embeds the sandbox and was started with a secret on its command line
    (`--api-key=...`), which it never hands to the run. argv: the token."""
    assert ctx.attack.language == "python" and not ctx.on_host
    token = f"stockade-argv-{uuid.uuid4().hex}"
    spec = ctx.tmp / "policy.toml"
    spec.write_text(policy_toml(ctx.policy))
    done = subprocess.run(
        [sys.executable, "-c", CALLER, str(spec), str(ctx.attack.path), token,
         f"--api-key={token}"],
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done
    return Outcome.of_json(json.loads(done.stdout))


# A program run in a pooled sandbox or a session as it would be in a fresh run: its argv set
# and its globals kept (a session's holder keeps what it holds between calls).
RUN_PROGRAM = """
import runpy, sys
sys.argv = {argv!r}
_held_{tag} = runpy.run_path("attack.py", run_name="__main__")
"""


def _in_warm(run: Callable[..., Result], ctx: Ctx, args: list[str], tag: str) -> Outcome:
    own, argv = program_files(ctx.attack)
    assert argv[0] == "python3", "pooled sandboxes and sessions run Python programs"
    code = RUN_PROGRAM.format(argv=["attack.py", *args], tag=tag)
    return Outcome.of_result(run(code, files=own))


def _judged(outcomes: dict[str, Outcome]) -> Outcome:
    """One outcome for several runs: their output, each under its name, and an ESCAPED line
    for each that did not end well (another tenant's use must not break a run)."""
    lines = []
    for name, outcome in outcomes.items():
        lines.append(f"--- {name}: {outcome.status}\n{outcome.stdout}{outcome.stderr}")
        if outcome.status != "ok":
            lines.append(f"ESCAPED the {name} failed: {outcome.status}: {outcome.error}")
    return Outcome("ok", 0, None, "\n".join(lines), "")


def tenants(ctx: Ctx) -> Outcome:
    """Sandboxes alive at once, of one policy: `hold` spends a per-user kernel count and keeps
    it, in a fresh run (`hold wait`: until its stdin ends) and then in a session (between
    calls); while each holds, `probe` runs in a fresh run and in a pooled sandbox (started
    then, so its start must not be broken either) and must find the count its own."""
    outcomes: dict[str, Outcome] = {}
    with live_run(ctx, ["hold", "wait"]) as holder:
        holder.wait_for(b"READY")
        outcomes["fresh probe beside a fresh holder"] = ctx.launch(["probe"])
        with Sandbox(ctx.policy, pool=1) as box:
            pooled = _in_warm(box.run_code, ctx, ["probe"], "probe")
        outcomes["pooled probe beside a fresh holder"] = pooled
        outcomes["fresh holder"] = holder.finish()
    box = Sandbox(ctx.policy)
    with box.session() as session:
        outcomes["session holder"] = _in_warm(session.run, ctx, ["hold"], "hold")
        outcomes["fresh probe beside a session holder"] = ctx.launch(["probe"])
        with Sandbox(ctx.policy, pool=1) as pool:
            pooled = _in_warm(pool.run_code, ctx, ["probe"], "probe")
        outcomes["pooled probe beside a session holder"] = pooled
    box.close()
    return _judged(outcomes)


def pool_serial(ctx: Ctx) -> Outcome:
    """One pooled sandbox, two tenants after each other: `bend` changes what it can of the
    pool's interpreter, then `probe` (the next run) must find none of it."""
    with Sandbox(ctx.policy, pool=1) as box:
        bend = _in_warm(box.run_code, ctx, ["bend"], "bend")
        probe = _in_warm(box.run_code, ctx, ["probe"], "probe")
    return _judged({"bending run": bend, "next run": probe})


HARNESSES: dict[str, Callable[[Ctx], Outcome]] = {
    "plain": plain,
    "secret": secret,
    "victim-process": victim_process,
    "host-listener": host_listener,
    "host-abstract": host_abstract,
    "concurrent": concurrent,
    "listen-probe": listen_probe,
    "inherited-fds": inherited_fds,
    "judge0": judge0,
    "setuid-helper": setuid_helper,
    "caller-argv": caller_argv,
    "tenants": tenants,
    "pool-serial": pool_serial,
}


# --------------------------------------------------------------------------- unharmed?


UIDS_PER_TEST = 8  # a test's sandboxes alive at once take one each


def _unused_uids() -> range:
    rng = random.SystemRandom()
    while True:
        first = rng.randrange(200_000, 2_000_000)
        uids = range(first, first + UIDS_PER_TEST)
        if not _processes_of(uids):
            return uids


def _processes_of(uids: range) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["uids"]):
        ids = process.info["uids"]
        if ids is not None and (ids.real in uids or ids.effective in uids):
            found.append(process)
    return found


def _files_of(uids: range) -> list[str]:
    found = []
    for place in HOST_DIRS:
        with contextlib.suppress(OSError), os.scandir(place) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid in uids:
                        found.append(entry.path)
    return found


def assert_unharmed(uids: range) -> None:
    """No process of the runs is left, and they wrote no file on the host. Whatever is found
    is removed, so a hole does not leave the machine dirty, and then reported."""
    deadline = time.monotonic() + 5
    while (left := _processes_of(uids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    described = [f"{p.pid} {p.info.get('name', '')}" for p in left]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGKILL)
    stray = _files_of(uids)
    for path in stray:
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
    assert not left, f"processes of the run outlived it: {described}"
    assert not stray, f"the run wrote on the host: {stray}"


# --------------------------------------------------------------------------- the test


@pytest.mark.parametrize(("attack", "via"), _params())
def test_attack_is_held(attack: Attack, via: str, tmp_path: Path) -> None:
    uids = _unused_uids()
    tmp_path.chmod(0o755)
    uid_range = f"{uids[0]}-{uids[-1]}"
    policy = Policy.load("default").override(uid_range=uid_range, **attack.limits)
    if SLOWDOWN != 1:
        policy = policy.override(timeout=policy.limits.timeout * SLOWDOWN)
    ctx = Ctx(attack, policy, tmp_path, via)
    try:
        r = HARNESSES[attack.harness](ctx)
    finally:
        assert_unharmed(uids)
    assert MARKER not in r.stdout, f"{attack.id}: the attack got through\n{r}"
    assert r.status in attack.expect, f"{attack.id}: unexpected status\n{r}"
    if attack.verdict:
        assert VERDICT in r.stdout, f"{attack.id}: the program did not reach its verdict\n{r}"
    if attack.check:
        namespace = {"r": r, "p": policy, "M": 1 << 20, "T": SLOWDOWN}
        assert eval(attack.check, namespace), f"{attack.id}: check failed: {attack.check}\n{r}"
    if attack.category == "resources":
        after = Sandbox(policy).run(["true"])
        responsive = after.ok and after.wall_time < 5 * SLOWDOWN
        assert responsive, f"the machine is not responsive: {after}"


CONTROLS = [a for a in ATTACKS if a.control == "host"]
SHARED_UID = [a for a in ATTACKS if a.control == "shared-uid"]


@pytest.mark.parametrize("attack", CONTROLS, ids=[a.id for a in CONTROLS])
def test_probe_sees_the_host_when_unsandboxed(attack: Attack, tmp_path: Path) -> None:
    """The other half of the pair (the gVisor pattern): run without the sandbox, the same
    probe does get through, so its silence inside the sandbox means something."""
    ctx = Ctx(attack, Policy.load("default"), tmp_path, "api", on_host=True)
    r = HARNESSES[attack.harness](ctx)
    assert MARKER in r.stdout, f"{attack.id}: the probe found nothing even unsandboxed\n{r}"


@pytest.mark.parametrize("attack", SHARED_UID, ids=[a.id for a in SHARED_UID])
def test_attack_gets_through_with_one_shared_uid(attack: Attack, tmp_path: Path) -> None:
    """The other half for the per-user kernel counts: with every sandbox of one uid (the
    policy's `process.uid` set, as every sandbox was before each took its own), the same
    attack does reach the other tenant, so its failure above is the per-sandbox uid's doing."""
    (uid, *_) = uids = _unused_uids()
    policy = Policy.load("default").override(uid=uid, **attack.limits)
    try:
        r = HARNESSES[attack.harness](Ctx(attack, policy, tmp_path, "api"))
    finally:
        assert_unharmed(uids)
    assert MARKER in r.stdout, f"{attack.id}: no effect even with one shared uid\n{r}"


def test_the_catalogue_is_complete() -> None:
    """The issue's floor: at least 60 attacks, every category covered, headers valid."""
    assert len(ATTACKS) >= 60, len(ATTACKS)
    by_category = {c: [a for a in ATTACKS if a.category == c] for c in CATEGORIES}
    assert all(by_category.values()), {c: len(a) for c, a in by_category.items()}
    assert {a.category for a in ATTACKS} <= set(CATEGORIES)
    for attack in ATTACKS:
        assert attack.harness in HARNESSES, attack
        assert set(attack.via) <= {"api", "cli"}, attack
        assert attack.control in (None, "host", "shared-uid"), attack
        source = attack.path.read_text()
        judged = MARKER in source or attack.check or attack.harness != "plain"
        assert judged, f"{attack.id}: nothing tells an escape from a success"
        assert not attack.verdict or VERDICT in source, f"{attack.id} never reports HELD"

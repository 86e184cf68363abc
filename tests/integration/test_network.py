"""Network isolation against the real kernel: no network by default, and with an allowlist
exactly the listed TCP destinations, through the relay, and nothing else.

The tests make their own "remote" hosts (nethosts.py): a network namespace joined to the
host by a veth pair, with two addresses (host A, and its neighbour B on the same test
network) and a small TCP server on two ports. Every check comes in a pair: what the sandbox
refuses is shown to work from the host, so each test fails if the protection is removed.
Only loopback, the host's own addresses and the tests' own namespaces are ever addressed.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from stockade import Policy, PolicyError, Result, Sandbox
from stockade.net import namespace as net
from stockade.spawn import supervisor as spawn
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

STEERING = net.detect()  # (available, why): BPF sk_lookup, which an allowlist needs
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not shutil.which("ip"), reason="needs iproute2's `ip` for the test hosts"),
    pytest.mark.skipif(not STEERING[0], reason=f"no network allowlist here: {STEERING[1]}"),
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    with remote_host("n", offset=0, ula="fd5a") as host:
        yield host


def run(policy: Policy, code: str, *args: str) -> Result:
    result = Sandbox(policy).run(["python3", "-c", code, *args])
    assert result.status == "ok", (result.status, result.error, result.stderr)
    return result


def probe(policy: Policy, targets: list[tuple[str, int]]) -> dict[str, str]:
    """Each target's answer from inside the sandbox; every answer came quickly."""
    found = json.loads(run(policy, PROBE, json.dumps(targets)).stdout)
    slow = {target: secs for target, (_, secs) in found.items() if secs > QUICK}
    assert not slow, f"answers took too long (a hang, not a refusal): {slow}"
    return {target: answer for target, (answer, _) in found.items()}


def allowing(*allow: str, **flags: object) -> Policy:
    return Policy.load("networked").override(allow_net=allow, **{"timeout": 20, **flags})


# -- no network by default -----------------------------------------------------------------


def test_default_has_only_loopback_up_and_its_own(remote: Remote) -> None:
    code = r"""
import socket
names = [line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]]
server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
conn, _ = server.accept()
conn.sendall(b"own loopback")
print(names, client.recv(64).decode())
"""
    result = run(Policy.load("default"), code)
    assert result.stdout == "['lo'] own loopback\n"
    assert from_host(remote.a, PORT) == f"{remote.a} {PORT}"
    answers = probe(Policy.load("default"), [(remote.a, PORT), (remote.host_ip, PORT)])
    assert set(answers.values()) == {"ENETUNREACH"}


# -- the allowlist -------------------------------------------------------------------------


def test_an_allowed_destination_answers_its_neighbours_do_not(remote: Remote) -> None:
    assert from_host(remote.a, OTHER_PORT) == f"{remote.a} {OTHER_PORT}"
    assert from_host(remote.b, PORT) == f"{remote.b} {PORT}"
    answers = probe(
        allowing(f"{remote.a}:{PORT}"), [(remote.a, PORT), (remote.a, OTHER_PORT), (remote.b, PORT)]
    )
    assert answers == {
        f"{remote.a} {PORT}": f"{remote.a} {PORT}",
        f"{remote.a} {OTHER_PORT}": "ECONNREFUSED",
        f"{remote.b} {PORT}": "ENETUNREACH",
    }


def test_an_address_without_a_port_allows_its_every_port_only(remote: Remote) -> None:
    answers = probe(
        allowing(remote.a), [(remote.a, PORT), (remote.a, OTHER_PORT), (remote.b, PORT)]
    )
    assert answers == {
        f"{remote.a} {PORT}": f"{remote.a} {PORT}",
        f"{remote.a} {OTHER_PORT}": f"{remote.a} {OTHER_PORT}",
        f"{remote.b} {PORT}": "ENETUNREACH",
    }


def test_a_cidr_with_a_port(remote: Remote) -> None:
    answers = probe(
        allowing(f"{remote.network}:{PORT}"),
        [(remote.a, PORT), (remote.b, PORT), (remote.b, OTHER_PORT), (remote.host_ip, PORT)],
    )
    assert answers == {
        f"{remote.a} {PORT}": f"{remote.a} {PORT}",
        f"{remote.b} {PORT}": f"{remote.b} {PORT}",
        f"{remote.b} {OTHER_PORT}": "ECONNREFUSED",
        f"{remote.host_ip} {PORT}": "ENETUNREACH",
    }


def test_ipv6_destinations(remote: Remote) -> None:
    if remote.a6 is None or remote.b6 is None:
        pytest.skip("the host has no IPv6")
    assert from_host(remote.b6, PORT) == f"{remote.b6} {PORT}"
    answers = probe(
        allowing(f"[{remote.a6}]:{PORT}"),
        [(remote.a6, PORT), (remote.a6, OTHER_PORT), (remote.b6, PORT), ("::1", PORT)],
    )
    assert answers == {
        f"{remote.a6} {PORT}": f"{remote.a6} {PORT}",
        f"{remote.a6} {OTHER_PORT}": "ECONNREFUSED",
        f"{remote.b6} {PORT}": "ENETUNREACH",
        f"::1 {PORT}": "ECONNREFUSED",
    }


# -- the host itself -----------------------------------------------------------------------


def _host_addresses() -> list[str]:
    found = ["127.0.0.1", "0.0.0.0", "::1", "::"]
    for addresses in psutil.net_if_addrs().values():
        for item in addresses:
            if item.family in (socket.AF_INET, socket.AF_INET6):
                found.append(item.address.split("%")[0])
    return sorted(set(found))


def test_the_hosts_loopback_and_addresses_are_unreachable(remote: Remote) -> None:
    with host_server() as port:
        for address in ("127.0.0.1", remote.host_ip):
            assert from_host(address, port) == "host"  # the host itself reaches it
        targets = [(address, port) for address in _host_addresses()]
        answers = probe(allowing(f"{remote.a}:{PORT}", f"{remote.network}:{port}"), targets)
    # Only an errno is a refusal: a greeting, or a connection closed at once, reached it.
    reached = {t: a for t, a in answers.items() if not a.startswith("E") or a == "EOF"}
    assert not reached, f"the host was reachable from inside: {reached}"


def test_naming_the_hosts_loopback_is_refused_unless_for_local_development() -> None:
    with host_server() as port:
        for entry in (f"127.0.0.1:{port}", "localhost", f"[::1]:{port}", "169.254.169.254:80"):
            with pytest.raises(PolicyError, match="never reachable"):
                Sandbox(allowing(entry)).run(["true"])
        answers = probe(
            allowing(f"127.0.0.1:{port}", allow_host_loopback=True), [("127.0.0.1", port)]
        )
    assert answers == {f"127.0.0.1 {port}": "host"}


# -- names, DNS, UDP -----------------------------------------------------------------------

# A private mount namespace where /etc/hosts names the test hosts, so the supervisor's
# resolver finds them without touching the machine's own configuration.
WITH_HOSTS = r"""
import os, sys
from stockade.kernel import syscalls as sc
sc.unshare(sc.CLONE_NEWNS)
sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
sc.mount(sys.argv[1], "/etc/hosts", None, sc.MS_BIND)
os.execv(sys.executable, [sys.executable, "-m", "stockade", *sys.argv[2:]])
"""

NAMES_INSIDE = r"""
import json, socket
found = {"hosts": open("/etc/hosts").read(), "resolv.conf": open("/etc/resolv.conf").read()}
for name in ("stockade-remote.test", "stockade-neighbour.test", "example.com", "localhost"):
    try:
        infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        found[name] = sorted({info[4][0] for info in infos})
    except socket.gaierror:
        found[name] = "gaierror"
with socket.create_connection(("stockade-remote.test", 8080), timeout=5) as conn:
    found["greeting"] = conn.makefile("rb").readline().decode().strip()
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    found["udp"] = "created"
except OSError as exc:
    found["udp"] = exc.errno
print(json.dumps(found))
"""


def sandbox_with_hosts(tmp_path: Path, remote: Remote, *args: str) -> subprocess.CompletedProcess:
    hosts = tmp_path / "hosts"
    names = {"127.0.0.1": "localhost", remote.a: "stockade-remote.test"}
    names[remote.b] = "stockade-neighbour.test"
    hosts.write_text("".join(f"{address} {name}\n" for address, name in names.items()))
    return subprocess.run(
        [sys.executable, "-c", WITH_HOSTS, str(hosts), *args],
        capture_output=True,
        timeout=60,
        cwd=REPO,
    )


def test_names_are_pinned_and_nothing_else_resolves(tmp_path: Path, remote: Remote) -> None:
    done = sandbox_with_hosts(
        tmp_path, remote, "run", "--allow-net", f"stockade-remote.test:{PORT}", "--",
        "python3", "-c", NAMES_INSIDE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert f"{remote.a}\tstockade-remote.test" in found["hosts"].splitlines()
    assert "stockade-neighbour" not in found["hosts"] and found["resolv.conf"] == ""
    assert found["stockade-remote.test"] == [remote.a]
    assert found["stockade-neighbour.test"] == "gaierror"  # the host knows it; the run not
    assert found["example.com"] == "gaierror"
    assert found["localhost"] == ["127.0.0.1", "::1"] or found["localhost"] == ["127.0.0.1"]
    assert found["greeting"] == f"{remote.a} {PORT}"
    assert found["udp"] == 1  # EPERM: no UDP, so no DNS query can leave either


def test_a_name_of_the_hosts_loopback_is_refused(tmp_path: Path, remote: Remote) -> None:
    (tmp_path / "unused").write_text("")
    done = sandbox_with_hosts(tmp_path, remote, "run", "--allow-net", "localhost:80", "--", "true")
    assert done.returncode == 125
    assert b"network.allow: 'localhost:80'" in done.stderr and b"127.0.0.0/8" in done.stderr


@pytest.mark.parametrize(
    "entry,says",
    [
        ("no-such-host.invalid", b"cannot resolve"),
        ("example.com:0", b"port"),
        ("example.com:65536", b"port"),
        ("10.1.2.3/16", b"host bits"),
        ("126.0.0.0/7:80", b"127.0.0.0/8"),
        ("169.254.0.0/16", b"169.254.0.0/16"),
        ("[::1", b"[IPV6]:PORT"),
    ],
)
def test_bad_entries_exit_2_before_anything_starts(entry: str, says: bytes) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stockade", "run", "--allow-net", entry, "--", "true"],
        capture_output=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 125 and b"network.allow" in done.stderr and says in done.stderr


UDP_INSIDE = r"""
import socket
for family, kind, proto in [
    (socket.AF_INET, socket.SOCK_DGRAM, 0), (socket.AF_INET6, socket.SOCK_DGRAM, 0),
    (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),
    (socket.AF_INET, socket.SOCK_STREAM, 0),
]:
    try:
        socket.socket(family, kind, proto).close()
        print("created")
    except OSError as exc:
        print(exc.errno)
"""


def test_udp_icmp_and_raw_sockets_are_refused(remote: Remote) -> None:
    result = run(allowing(f"{remote.a}:{PORT}"), UDP_INSIDE)
    assert result.stdout.split() == ["1", "1", "1", "1", "created"]


# -- bounds ----------------------------------------------------------------------------------


def test_max_connections(remote: Remote) -> None:
    policy = allowing(f"{remote.a}:{PORT}", max_connections=2)
    result = run(policy, CROWD, remote.a, str(PORT), "2")
    greeting = f"{remote.a} {PORT}"
    assert result.stdout.splitlines() == [
        f"held {greeting}",
        f"held {greeting}",
        "over refused",
        f"after one closed {greeting}",
    ]
    assert any("max_connections (2)" in warning for warning in result.warnings)


GREEDY = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
def fetch(size):
    got = 0
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(f"send {size}\n".encode())
            while chunk := conn.recv(65536):
                got += len(chunk)
    except OSError:
        pass
    return got
print(fetch(50_000), fetch(1_000_000), fetch(10))
"""


@pytest.mark.parametrize("max_bytes,cut", [(200_000, True), (64 << 20, False)])
def test_max_bytes(remote: Remote, max_bytes: int, cut: bool) -> None:
    policy = allowing(f"{remote.a}:{PORT}", max_bytes=max_bytes)
    result = run(policy, GREEDY, remote.a, str(PORT))
    greeting = len(f"{remote.a} {PORT}\n")
    small, big, after = (int(n) for n in result.stdout.split())
    assert small == greeting + 50_000
    if cut:
        assert big <= max_bytes - small and after == 0
        assert any("max_bytes (200000)" in warning for warning in result.warnings)
    else:
        assert big == greeting + 1_000_000 and after == greeting + 10
        assert result.warnings == ()


# -- nothing is left -------------------------------------------------------------------------

HOLD = r"""
import os, socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
conn.sendall(b"hold\n")
conn.makefile("rb").readline()
print(os.readlink("/proc/self/ns/net"), flush=True)
time.sleep(60)
"""


def _namespaces_in_use() -> set[str]:
    """Every network namespace a process is in or holds an fd of."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            found.add(os.readlink(f"/proc/{pid}/ns/net"))
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("net:["):
                        found.add(link)
    return found


def _links() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


def _host_connections_to(remote: Remote) -> list[object]:
    targets = {remote.a, remote.b, remote.a6, remote.b6}
    return [
        c
        for c in psutil.net_connections(kind="tcp")
        if c.raddr and c.raddr.ip in targets and c.status != psutil.CONN_TIME_WAIT
    ]


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_killed_run_leaves_nothing(remote: Remote) -> None:
    links, threads = _links(), _threads()
    policy = allowing(f"{remote.a}:{PORT}", timeout=2)
    result = Sandbox(policy).run(["python3", "-c", HOLD, remote.a, str(PORT)])
    assert result.status == "timeout"
    netns = result.stdout.strip()
    assert netns.startswith("net:[")
    assert eventually(lambda: remote.count() == 0), "the relayed connection outlived the run"
    assert eventually(lambda: netns not in _namespaces_in_use()), "the run's netns is left"
    assert not _host_connections_to(remote)
    assert _links() == links and _threads() == threads


def _spawn_server() -> psutil.Process:
    me = psutil.Process()
    servers = [p for p in me.children() if "stockade.spawn.server" in " ".join(p.cmdline())]
    assert len(servers) == 1
    return servers[0]


def _supervisors_with_a_relay() -> list[psutil.Process]:
    """The spawn server's children that hold a relay and an init: an earlier test's
    supervisor may still be exiting, with neither."""
    found = []
    for supervisor in _spawn_server().children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if len(supervisor.children()) == 2:
                found.append(supervisor)
    return found


def test_killing_the_supervisor_tears_the_network_down(remote: Remote) -> None:
    policy = allowing(f"{remote.a}:{PORT}", timeout=30)
    results: list[Result] = []
    runner = threading.Thread(  # a second thread: the run goes through the spawn server
        target=lambda: results.append(
            Sandbox(policy).run(["python3", "-c", HOLD, remote.a, str(PORT)])
        )
    )
    runner.start()
    try:
        assert eventually(lambda: remote.count() == 1, 20), "the run never connected"
        supervisors = _supervisors_with_a_relay()
        assert len(supervisors) == 1
        supervisor = supervisors[0]
        relay_and_init = supervisor.children()
        assert len(relay_and_init) == 2
        supervisor.kill()
    finally:
        runner.join(30)
    assert results and results[0].status == "setup_failed"
    assert eventually(lambda: remote.count() == 0), "the relayed connection outlived the run"
    assert eventually(lambda: all(_gone(p) for p in relay_and_init))
    assert not _host_connections_to(remote)

    def swept() -> bool:  # the run dir and cgroup a SIGKILLed supervisor leaves behind
        spawn.cleanup_stale()
        return not glob.glob(f"{tempfile.gettempdir()}/{spawn.RUN_DIR_PREFIX}{supervisor.pid}-*")

    assert eventually(swept)

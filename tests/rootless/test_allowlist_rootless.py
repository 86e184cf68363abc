"""Rootless mode: the network allowlist, against a test host of the test's own (as in
tests/integration/test_network.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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
from tests.rootless.users import NO_NESTING, SYSTEM_PYTHON, User, json_of

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
    result = json_of(
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
    result = json_of(
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
    result = json_of(
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
    result = json_of(
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

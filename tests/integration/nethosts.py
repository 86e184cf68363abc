"""Test hosts for the network tests (as root, test_network.py; rootless, tests/rootless).

A test host is a network namespace joined to the host by a veth pair, with two addresses
(host A, and its neighbour B on the same test network; A6 and B6 over IPv6 when the host has
IPv6) and a small TCP server on two ports. Only loopback, the host's own addresses and these
namespaces are ever addressed. Names avoid "stockade": the leak checks look for that.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil

PORT, OTHER_PORT = 8080, 8081
QUICK = 1.5  # seconds: a refusal must come at once, never after a timeout

# The test host's server: a greeting line "ADDRESS PORT\n", then commands, one a line:
# "send N" (N bytes, then close), "count" (how many other connections are open, then close);
# anything else, or nothing, keeps the connection open until the client closes it.
SERVER = r"""
import socket, sys, threading
open_connections = set()
lock = threading.Lock()
def serve(conn):
    with lock:
        open_connections.add(conn)
    try:
        host, port = conn.getsockname()[:2]
        host = host.removeprefix("::ffff:")
        conn.sendall(f"{host} {port}\n".encode())
        for line in conn.makefile("rb"):
            command = line.decode().split()
            if command[:1] == ["send"]:
                conn.sendall(b"x" * int(command[1]))
                return
            if command == ["count"]:
                with lock:
                    conn.sendall(f"{len(open_connections) - 1}\n".encode())
                return
    except OSError:
        pass
    finally:
        with lock:
            open_connections.discard(conn)
        conn.close()
def listen(port):
    sock = socket.socket(socket.AF_INET6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    sock.listen(64)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
for port in sys.argv[1:]:
    threading.Thread(target=listen, args=(int(port),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

# Inside the sandbox: connect to each target, read the greeting; print one JSON object of
# target -> [greeting, or the errno's name ("EOF" when closed at once), seconds].
PROBE = r"""
import errno, json, socket, sys, time
found = {}
for host, port in json.loads(sys.argv[1]):
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            data = conn.makefile("rb").readline()
            answer = data.decode().strip() if data else "EOF"
    except OSError as exc:
        answer = errno.errorcode.get(exc.errno, str(exc)) if exc.errno else type(exc).__name__
    found[f"{host} {port}"] = [answer, time.monotonic() - started]
print(json.dumps(found))
"""


@dataclass(frozen=True)
class Remote:
    namespace: str
    host_link: str  # the host's end of the veth
    host_ip: str  # an address of the host, on the veth
    a: str  # a remote test host
    b: str  # its neighbour on the same test network
    network: str  # the test network, a /24 holding A and B
    a6: str | None  # the same over IPv6, when the host has IPv6
    b6: str | None

    def count(self) -> int:
        """Connections open on the remote server (seen from the host: not through a run)."""
        with socket.create_connection((self.a, PORT), timeout=5) as conn:
            conn.sendall(b"count\n")
            return int(conn.makefile("rb").readlines()[-1])


def from_host(host: str, port: int) -> str:
    """The greeting the remote server gives the host itself: the control half of a pair."""
    with socket.create_connection((host, port), timeout=5) as conn:
        return conn.makefile("rb").readline().decode().strip()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _free_octet(offset: int) -> int:
    used = {
        ipaddress.ip_address(a.address.split("%")[0])
        for addresses in psutil.net_if_addrs().values()
        for a in addresses
        if a.family in (socket.AF_INET, socket.AF_INET6)
    }
    for step in range(150):
        octet = 100 + (os.getpid() + offset + step) % 150
        if not any(a in ipaddress.ip_network(f"10.{octet}.0.0/16") for a in used):
            return octet
    raise RuntimeError("no free 10.x.0.0/16 for the test network")


@contextlib.contextmanager
def remote_host(kind: str, offset: int, ula: str) -> Iterator[Remote]:
    """A test host named after `kind` (one letter), on a free 10.x.0.0/16 looked for from
    `offset`, and on IPv6 in the ULA prefix `ula` (such as "fd5a"); gone afterwards."""
    tag, octet = os.getpid() % 100_000, _free_octet(offset)
    ipv6 = os.path.exists("/proc/net/if_inet6")
    v6 = f"{ula}:{octet:x}"
    found = Remote(
        namespace=f"stk-test-{kind}-{tag}",
        host_link=f"stk{kind}{tag}h",
        host_ip=f"10.{octet}.1.1",
        a=f"10.{octet}.2.2",
        b=f"10.{octet}.2.3",
        network=f"10.{octet}.2.0/24",
        a6=f"{v6}:2::2" if ipv6 else None,
        b6=f"{v6}:2::3" if ipv6 else None,
    )
    ns, link, peer = found.namespace, found.host_link, f"stk{kind}{tag}r"
    server = None
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", link, "type", "veth", "peer", "name", peer, "netns", ns)
        _ip("addr", "add", f"{found.host_ip}/24", "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", ns, "addr", "add", f"10.{octet}.1.2/24", "dev", peer)
        _ip("-n", ns, "link", "set", peer, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        for address in (found.a, found.b):
            _ip("-n", ns, "addr", "add", f"{address}/32", "dev", "lo")
        _ip("route", "add", found.network, "via", f"10.{octet}.1.2", "dev", link)
        if ipv6:
            _ip("-6", "addr", "add", f"{v6}:1::1/64", "dev", link, "nodad")
            _ip("-n", ns, "-6", "addr", "add", f"{v6}:1::2/64", "dev", peer, "nodad")
            for address in (found.a6, found.b6):
                _ip("-n", ns, "-6", "addr", "add", f"{address}/128", "dev", "lo")
            _ip("-6", "route", "add", f"{v6}:2::/64", "via", f"{v6}:1::2")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, str(PORT), str(OTHER_PORT)],
            stdout=subprocess.PIPE,
        )
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        yield found
    finally:
        if server is not None:
            server.kill()
            server.wait()
            assert server.stdout is not None
            server.stdout.close()
        subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextlib.contextmanager
def host_server() -> Iterator[int]:
    """A server on every address of the host (so also 127.0.0.1) that greets with "host";
    its port. The thread and its sockets are gone when the block ends."""
    server = socket.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    server.settimeout(0.1)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                with conn:
                    conn.sendall(b"host\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join()
        server.close()


# A workload: hold `limit` connections, try one more, close one, try again.
CROWD = r"""
import socket, sys, time
host, port, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def greet(hold=None):
    try:
        conn = socket.create_connection((host, port), timeout=5)
        if hold is not None:
            conn.sendall(b"hold\\n")
            hold.append(conn)
        with conn.makefile("rb") as reader:
            return reader.readline().decode().strip() or "refused"
    except OSError:
        return "refused"  # reset at once (possibly before connect() returned)
held = []
for _ in range(limit):
    print("held", greet(held))
print("over", greet())
held.pop().close()
for _ in range(50):  # the relay sees the close a moment later
    answer = greet()
    if answer != "refused":
        break
    time.sleep(0.05)
print("after one closed", answer)
"""


def eventually(check: Callable[[], object], seconds: float = 5.0) -> bool:
    """Whether `check()` comes true within `seconds` (polled every 50 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())

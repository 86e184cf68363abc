"""The relay: the run's only way out. A process of its own, on the host's side.

Its listeners live in the run's network namespace (made there by `net.namespace.isolate`, which
steers allowlisted connections to them); the relay process itself runs in the host's
namespace. For each accepted connection it reads the destination the workload dialled (the
accepted socket's own address), checks it against the plan again, and connects to exactly
that address and port. Over the run's bounds (connections at once, bytes relayed in total)
new connections are reset at once, and when the byte budget runs out the open ones are cut
too. When told to stop (EOF on its control socket) it resets every connection, sends its
counters and exits; it dies with the supervisor (PR_SET_PDEATHSIG).

A process, not a thread of the supervisor: after unshare(CLONE_NEWPID) the kernel refuses
the supervisor new threads (EINVAL), and a single-threaded supervisor keeps fork safe.

Rootless, the relay is forked before the supervisor enters its user namespace (so it stays
the caller's user in the host's network namespace) with no listeners yet: the supervisor
makes them in the run's namespace later (`listen_each`: one per allowed address and port,
no BPF) and hands them over on the control socket (SCM_RIGHTS, `RelayProcess.hand_over`).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import selectors
import signal
import socket
import struct
import time
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from stockade.kernel import syscalls as sc

if TYPE_CHECKING:
    from stockade.net.allowlist import NetworkPlan

CONNECT_TIMEOUT = 10.0  # seconds for the destination to accept
STOP_TIMEOUT = 2.0  # seconds the relay has to report before it is killed
_CHUNK = 1 << 16
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset, at once


def listen(plan: NetworkPlan) -> list[socket.socket]:
    """The relay's listeners, in the current (the run's) namespace: one per address family
    that the rules use. Bound to loopback; sk_lookup hands them their connections."""
    listeners = []
    try:
        for version in sorted({rule.network.version for rule in plan.rules}):
            family, address = (
                (socket.AF_INET, "127.0.0.1") if version == 4 else (socket.AF_INET6, "::1")
            )
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            listeners.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setblocking(False)
            sock.bind((address, 0))
            sock.listen(128)
    except OSError:
        close_all(listeners)
        raise
    return listeners


_IP_FREEBIND = 15  # <linux/in.h>; for IPv6 too: a `local` route does not make an address bindable
_HAND_OVER_BATCH = 250  # fds per message: the kernel takes at most 253 (SCM_MAX_FD)
_MORE, _LAST = b"M", b"L"


def listen_each(plan: NetworkPlan) -> list[socket.socket]:
    """Rootless listeners, in the current (the run's) namespace, without BPF: one bound to each
    allowed address and port; for a port of a network (several addresses), one on the
    wildcard address, which takes that port of every local address (the relay re-checks each
    connection's destination). Every rule must have a port: `plan_network` refused the others."""
    wanted: dict[tuple[int, int], set[str] | None] = {}  # (family, port) -> addresses, or any
    for rule in plan.rules:
        if rule.port is None:
            raise ValueError(f"{rule.network}: every port needs root (BPF sk_lookup)")
        key = (socket.AF_INET if rule.network.version == 4 else socket.AF_INET6, rule.port)
        if rule.network.num_addresses > 1:
            wanted[key] = None
        elif (addresses := wanted.setdefault(key, set())) is not None:
            addresses.add(str(rule.network.network_address))
    listeners = []
    try:
        for (family, port), addresses in sorted(wanted.items()):
            wildcard = "0.0.0.0" if family == socket.AF_INET else "::"
            for address in sorted(addresses) if addresses is not None else [wildcard]:
                sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                listeners.append(sock)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
                sock.setblocking(False)
                sock.bind((address, port))
                sock.listen(128)
    except OSError:
        close_all(listeners)
        raise
    return listeners


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def _nonlocal_bind(version: int) -> bool:
    name = "ipv4/ip_nonlocal_bind" if version == 4 else "ipv6/ip_nonlocal_bind"
    try:
        with open(f"/proc/sys/net/{name}") as sysctl:
            return sysctl.read().strip() != "0"
    except OSError:
        return False


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    sock.close()


class Counters(NamedTuple):
    relayed: int = 0  # bytes, both directions
    refused: int = 0  # connections reset at once: not allowed, or over a bound
    over_connections: int = 0  # of those, refused for max_connections
    exhausted: bool = False  # max_bytes was reached


class RelayProcess:
    """The supervisor's handle on its relay process."""

    def __init__(
        self, listeners: list[socket.socket], plan: NetworkPlan, *, later: bool = False
    ) -> None:
        """Fork the relay (the caller must be single-threaded); it gets the listeners, or with
        `later`, waits for them (`hand_over`) before it accepts anything."""
        self.plan = plan
        ours, theirs = socket.socketpair()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            ours.close()
            _relay_main(listeners, plan, theirs, parent, later)
        theirs.close()
        self.control = ours
        self.counters: Counters | None = None

    def hand_over(self, listeners: list[socket.socket]) -> None:
        """Send the listeners to a relay forked with `later` (the caller still closes its own
        copies). The relay takes them all before it reads anything else from `control`."""
        fds = [sock.fileno() for sock in listeners]
        for start in range(0, max(len(fds), 1), _HAND_OVER_BATCH):
            batch = fds[start : start + _HAND_OVER_BATCH]
            last = start + _HAND_OVER_BATCH >= len(fds)
            if batch:
                socket.send_fds(self.control, [_LAST if last else _MORE], batch)
            else:
                self.control.sendall(_LAST)

    def stop(self) -> Counters:
        """Stop the relay (every connection is reset) and return its counters."""
        if self.counters is not None:
            return self.counters
        report = b""
        try:
            self.control.shutdown(socket.SHUT_WR)
            self.control.settimeout(STOP_TIMEOUT)
            while chunk := self.control.recv(4096):
                report += chunk
        except OSError:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.control.close()
        numbers = [int(n) for n in report.split()]
        if len(numbers) == 4:
            self.counters = Counters(numbers[0], numbers[1], numbers[2], bool(numbers[3]))
        else:  # the relay died without a word: say nothing rather than guess
            self.counters = Counters()
        return self.counters


def _relay_main(
    listeners: list[socket.socket],
    plan: NetworkPlan,
    control: socket.socket,
    parent: int,
    later: bool = False,
) -> NoReturn:
    try:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the supervisor died before the line above
            os._exit(0)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        sc.close_fds_except({2, control.fileno(), *(sock.fileno() for sock in listeners)})
        null = os.open(os.devnull, os.O_RDWR)  # 0 and 1 are never one of the relay's sockets
        for fd in (0, 1):
            if fd != null:
                os.dup2(null, fd)
        if later:
            listeners = _receive_listeners(control)
        relay = Relay(listeners, plan, control)
        relay.run()
        c = relay.counters()
        with contextlib.suppress(OSError):
            control.sendall(
                f"{c.relayed} {c.refused} {c.over_connections} {c.exhausted:d}".encode()
            )
    finally:
        os._exit(0)


def _receive_listeners(control: socket.socket) -> list[socket.socket]:
    """The listeners `hand_over` sends; at end of file (the supervisor's setup failed), or
    anything unexpected, the relay exits at once without a word."""
    listeners: list[socket.socket] = []
    while True:
        try:
            data, fds, flags, _ = socket.recv_fds(
                control, 1, _HAND_OVER_BATCH, socket.MSG_CMSG_CLOEXEC
            )
        except OSError:
            os._exit(0)
        listeners += [socket.socket(fileno=fd) for fd in fds]
        if data not in (_MORE, _LAST) or flags & socket.MSG_CTRUNC:
            os._exit(0)  # cut short (out of fds): serve nothing rather than part of the list
        if data == _LAST:
            for sock in listeners:
                sock.setblocking(False)
            return listeners


class Relay:
    """The relay's loop, in the relay process: accept, check, connect, forward."""

    def __init__(
        self, listeners: list[socket.socket], plan: NetworkPlan, control: socket.socket
    ) -> None:
        self.plan = plan
        self.listeners = listeners
        self.control = control
        self.relayed = 0
        self.refused = 0
        self.over_connections = 0
        self.links: set[_Link] = set()
        self.selector = selectors.DefaultSelector()
        self._stopping = False

    def counters(self) -> Counters:
        return Counters(self.relayed, self.refused, self.over_connections, self.exhausted)

    @property
    def exhausted(self) -> bool:
        return self.relayed >= self.plan.max_bytes

    def run(self) -> None:
        """Until the control socket says stop (EOF, or the supervisor is gone)."""
        try:
            for listener in self.listeners:
                self.selector.register(listener, selectors.EVENT_READ, self._accept)
            self.selector.register(self.control, selectors.EVENT_READ, self._control)
            while not self._stopping:
                for key, _ in self.selector.select(self._timeout()):
                    key.data(key.fileobj)
                self._expire()
        finally:
            for link in list(self.links):
                link.close(reset=True)
            self.selector.close()
            close_all(self.listeners)

    def _control(self, control: socket.socket) -> None:
        try:
            self._stopping = not control.recv(64)
        except OSError:
            self._stopping = True

    def _timeout(self) -> float | None:
        deadlines = [link.deadline for link in self.links if not link.connected]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _expire(self) -> None:
        now = time.monotonic()
        for link in [link for link in self.links if not link.connected and link.deadline < now]:
            link.close(reset=True)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                inside, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the workload gave up already (ECONNABORTED)
                if exc.errno == errno.ECONNABORTED:
                    continue
                raise
            self._admit(inside)

    def _admit(self, inside: socket.socket) -> None:
        inside.setblocking(False)
        host, port = inside.getsockname()[:2]
        address = ipaddress.ip_address(host.split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        crowded = len(self.links) >= self.plan.max_connections
        allowed = self.plan.allows(address, port) and not self._host_local(address)
        if not allowed or self.exhausted or crowded:
            self.refused += 1
            self.over_connections += crowded
            _reset(inside)
            return
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        outside = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        outside.setblocking(False)
        code = outside.connect_ex((str(address), port))
        if code not in (0, errno.EINPROGRESS):
            _reset(inside)
            _reset(outside)
            return
        link = _Link(self, inside, outside)
        self.links.add(link)
        link.update()

    def _host_local(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Is `address` the host's own, now? The plan refused the host's addresses when the
        run started; this also catches one added since, or a `local` route (AnyIP): only a
        local address can be bound. Skipped where ip_nonlocal_bind makes every bind work."""
        if self.plan.allow_host_loopback or _nonlocal_bind(address.version):
            return False
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
            try:
                probe.bind((str(address), 0))
            except OSError:
                return False
        return True

    def account(self, size: int) -> None:
        self.relayed += size
        if self.exhausted:  # cut everything: not one byte over the bound
            for link in list(self.links):
                link.close(reset=True)


class _Link:
    """One relayed connection: `inside` (the workload's) and `outside` (the destination)."""

    def __init__(self, relay: Relay, inside: socket.socket, outside: socket.socket) -> None:
        self.relay = relay
        self.inside, self.outside = inside, outside
        self.deadline = time.monotonic() + CONNECT_TIMEOUT
        self.connected = False
        self.closed = False
        # What waits to be written to each socket, and whether each can still be read.
        self.pending = {inside: bytearray(), outside: bytearray()}
        self.readable = {inside: True, outside: True}
        self.registered: set[socket.socket] = set()

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.outside if sock is self.inside else self.inside

    def update(self) -> None:
        """Register each socket for what it waits for: connect, data, or room to write."""
        for sock in (self.inside, self.outside):
            events = 0
            if not self.connected:
                events = selectors.EVENT_WRITE if sock is self.outside else 0
            else:
                if self.readable[sock] and not self.pending[self.peer(sock)]:
                    events |= selectors.EVENT_READ
                if self.pending[sock]:
                    events |= selectors.EVENT_WRITE
            self._register(sock, events)
        if self.connected and not any(self.readable.values()) and not any(self.pending.values()):
            self.close(reset=False)

    def _register(self, sock: socket.socket, events: int) -> None:
        selector = self.relay.selector
        if not events:
            if sock in self.registered:
                selector.unregister(sock)
                self.registered.discard(sock)
        elif sock in self.registered:
            selector.modify(sock, events, self._ready)
        else:
            selector.register(sock, events, self._ready)
            self.registered.add(sock)

    def _ready(self, sock: socket.socket) -> None:
        try:
            if not self.connected:
                self._connected()
            else:
                if self.pending[sock]:
                    self._write(sock)
                if not self.closed and self.readable[sock] and not self.pending[self.peer(sock)]:
                    self._read(sock)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # a reset or an unreachable destination: pass it on as a reset
            self.close(reset=True)
            return
        if not self.closed:
            self.update()

    def _connected(self) -> None:
        code = self.outside.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, "connect")
        self.connected = True
        for sock in (self.inside, self.outside):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _read(self, sock: socket.socket) -> None:
        budget = self.relay.plan.max_bytes - self.relay.relayed
        data = sock.recv(min(_CHUNK, max(budget, 1)))
        target = self.peer(sock)
        if not data:
            self.readable[sock] = False
            if not self.pending[target]:
                target.shutdown(socket.SHUT_WR)
            return
        self.pending[target] += data
        self._write(target)
        self.relay.account(len(data))

    def _write(self, sock: socket.socket) -> None:
        try:
            sent = sock.send(self.pending[sock])
        except BlockingIOError:
            return
        del self.pending[sock][:sent]
        if not self.pending[sock] and not self.readable[self.peer(sock)]:
            sock.shutdown(socket.SHUT_WR)

    def close(self, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in self.registered:
            self.relay.selector.unregister(sock)
        self.registered.clear()
        for sock in (self.inside, self.outside):
            _reset(sock) if reset else sock.close()
        self.relay.links.discard(self)

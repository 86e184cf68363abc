"""The run's network: its own namespace with only `lo`, and an allowlist of TCP destinations.

Pure half: `plan_network(policy.network)` parses every allowlist entry, resolves names once
(pinned for the run in the sandbox's /etc/hosts) and refuses loopback, link-local, metadata
and the host's own addresses, unless `allow_host_loopback` is set.

Privileged half, in the supervisor (single-threaded, no event loop, before it forks the
run's init): `isolate(plan)` makes the run's network namespace, brings `lo` up and makes the
allowed networks local on it (pyroute2), steers connections to them into listening sockets
made there (BPF sk_lookup, `net_steer`), returns to the host's namespace and forks the relay
(`net_relay`), which forwards each accepted connection to the destination it was addressed
to, from the host's side. The init joins the namespace (`enter`). The host's firewall,
routes and sysctls are never touched: the namespace, its routes, the program and the relay
all go with the run.

Rootless (the supervisor enters a user namespace before it forks the init), neither BPF nor
a way back into the host's namespace is there, so: `isolate` forks the relay first, still
the caller's user in the host's namespace; once in the user namespace the supervisor makes
the run's network namespace, owned by it (`RunNetwork.make_namespace`), with the same routes
and a listener bound to each allowed address and port, hands the listeners to the relay
(SCM_RIGHTS) and stays there. Listeners cannot cover "every port", so rootless, an entry
without a port is refused when the run is planned.
"""

# Not `from __future__ import annotations`: it would cost every command (see plan.py).
import contextlib
import errno
import fcntl
import ipaddress
import os
import re
import socket
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from . import _syscalls as sc
from .errors import PolicyError, SetupError, UnsupportedError

if TYPE_CHECKING:
    from .net_relay import RelayProcess
    from .policy import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]

_FIELD = "network.allow"
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
# Never a destination, whatever the policy says.
_NOT_UNICAST = tuple(
    ipaddress.ip_network(n)
    for n in ("0.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32", "::/128", "ff00::/8")
)
# The host itself and the cloud's metadata services: only with allow_host_loopback.
_HOST_ONLY = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8", "169.254.0.0/16", "100.100.100.200/32",  # Alibaba's metadata
        "::1/128", "fe80::/10", "fd00:ec2::254/128",  # AWS's IPv6 metadata
        # IPv4-mapped and -compatible IPv6 addresses reach IPv4 (127.0.0.1 among them):
        # write the IPv4 form instead.
        "::ffff:0:0/96", "::/96",
    )
)  # fmt: skip


class Rule(NamedTuple):
    """One allowed destination: every address of `network`, on `port` (None: every port)."""

    network: Net
    port: int | None = None

    def allows(self, address: Address, port: int) -> bool:
        return address in self.network and self.port in (None, port)


class NetworkPlan(NamedTuple):
    """What the run may reach; no rules means no network at all (only the run's own lo)."""

    rules: tuple[Rule, ...] = ()
    hosts: tuple[tuple[str, str], ...] = ()  # (name, address) pinned in /etc/hosts
    max_connections: int = 16
    max_bytes: int = 64 << 20
    allow_host_loopback: bool = False

    def allows(self, address: Address, port: int) -> bool:
        if not self.allow_host_loopback and _refused(address):
            return False
        return any(rule.allows(address, port) for rule in self.rules)


# -- pure half -------------------------------------------------------------------------------


class Entry(NamedTuple):
    """One allowlist entry, parsed: an address or network, or a name to resolve."""

    network: Net | None
    name: str | None
    port: int | None


def parse_entry(text: str) -> Entry:
    """'HOST', 'HOST:PORT', 'ADDR', 'ADDR:PORT', '[V6]:PORT', 'CIDR', 'CIDR:PORT', '[V6CIDR]:PORT'.
    Raises ValueError saying what is wrong."""
    spec = text.strip()
    if spec.startswith("["):
        inner, bracket, rest = spec[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPV6]:PORT")
        host, port = inner, _port(rest[1:], text) if rest else None
    elif spec.count(":") > 1 and "/" not in spec:
        host, port = spec, None  # a bare IPv6 address: its colons are not a port
    elif "/" in spec:
        host, _, length_port = spec.partition("/")
        length, colon, port_text = length_port.partition(":")
        host, port = f"{host}/{length}", _port(port_text, text) if colon else None
    else:
        host, colon, port_text = spec.partition(":")
        port = _port(port_text, text) if colon else None
    try:
        network = ipaddress.ip_network(host)
    except ValueError as exc:
        if "/" in host:
            raise ValueError(f"{text!r}: not a CIDR such as 10.1.0.0/16:443 ({exc})") from None
        if ":" in host:
            raise ValueError(
                f"{text!r}: not an IPv6 address (with a port, write [ADDRESS]:PORT)"
            ) from None
        return Entry(None, _hostname(host, text), port)
    if network.num_addresses == 1:
        network = ipaddress.ip_network(_unmapped(network.network_address))
    return Entry(network, None, port)


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(text)


def _hostname(name: str, entry: str) -> str:
    labels = name.removesuffix(".").split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{entry!r}: not a host name, an IP address or a CIDR")
    if not labels[-1][0].isalpha():
        # '10.1.2' or '0x7f.1' would reach inet_aton's shorthand forms, not DNS.
        raise ValueError(f"{entry!r}: not a valid IP address, and not a host name")
    return name.lower().removesuffix(".")


def plan_network(
    policy: "Network",
    *,
    resolve: Resolver | None = None,
    host_addresses: Callable[[], set[Address]] | None = None,
    rootless: bool | None = None,
) -> NetworkPlan:
    """The run's network plan. Names are resolved now, once; anything the allowlist must
    not reach raises `PolicyError` naming `network.allow` and the entry. `rootless` (by
    default: not root) refuses entries without a port, which only root can serve."""
    if rootless is None:
        rootless = os.geteuid() != 0
    if not policy.allow:
        return NetworkPlan(max_connections=policy.max_connections, max_bytes=policy.max_bytes)
    resolve = resolve or resolve_tcp
    local = None if policy.allow_host_loopback else (host_addresses or _host_addresses)()
    rules: list[Rule] = []
    hosts: list[tuple[str, str]] = []
    for text in policy.allow:
        try:
            entry = parse_entry(text)
        except ValueError as exc:
            raise PolicyError(_FIELD, str(exc)) from None
        if rootless and entry.port is None:
            raise PolicyError(_FIELD, _every_port_needs_root(entry, text))
        networks = [entry.network] if entry.network else _resolved(entry, text, resolve)
        for network in networks:
            _check_network(network, text, local)
            rules.append(Rule(network, entry.port))
            if entry.name:
                hosts.append((entry.name, str(network.network_address)))
    # Load pyroute2 (~0.2 s of imports) here, once per process: a supervisor forked from
    # this process then has it, instead of importing it anew for every run.
    import pyroute2.iproute.linux  # type: ignore[import-untyped]  # noqa: F401

    return NetworkPlan(
        rules=tuple(dict.fromkeys(rules)),
        hosts=tuple(dict.fromkeys(hosts)),
        max_connections=policy.max_connections,
        max_bytes=policy.max_bytes,
        allow_host_loopback=policy.allow_host_loopback,
    )


def _every_port_needs_root(entry: Entry, text: str) -> str:
    if entry.network is None:
        host = str(entry.name)
    elif entry.network.num_addresses > 1:
        host = str(entry.network)
    else:
        host = str(entry.network.network_address)
    example = f"[{host}]:443" if ":" in host else f"{host}:443"
    return (
        f"{text!r} allows every port, which needs root (a BPF sk_lookup program, which a user "
        f"namespace cannot load); without root, give a port, such as {example!r}"
    )


def resolve_tcp(name: str) -> list[str]:
    """The name's addresses for TCP, as this host resolves them (AI_ADDRCONFIG: only
    families the host has addresses of)."""
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
    return [str(info[4][0]).split("%")[0] for info in infos]


def _resolved(entry: Entry, text: str, resolve: Resolver) -> list[Net]:
    assert entry.name is not None
    try:
        found = resolve(entry.name)
    except (OSError, UnicodeError) as exc:
        raise PolicyError(_FIELD, f"{text!r}: cannot resolve {entry.name!r}: {exc}") from None
    if not found:
        raise PolicyError(_FIELD, f"{text!r}: {entry.name!r} has no address")
    networks = []
    for address in dict.fromkeys(found):
        parsed = _unmapped(ipaddress.ip_address(address))
        networks.append(ipaddress.ip_network(parsed))
    return networks


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _check_network(network: Net, text: str, local: set[Address] | None) -> None:
    for bad in _NOT_UNICAST:
        if network.overlaps(bad):
            raise PolicyError(_FIELD, f"{text!r}: {network} covers {bad}, never a destination")
    if local is None:  # allow_host_loopback
        return
    for bad in _HOST_ONLY:
        if network.overlaps(bad):
            raise PolicyError(
                _FIELD,
                f"{text!r}: {network} covers {bad} (loopback, link-local, metadata or "
                "IPv4-mapped addresses are never reachable; allow_host_loopback = true lifts "
                "this for local development)",
            )
    for address in sorted(local, key=str):
        if address in network:
            raise PolicyError(
                _FIELD,
                f"{text!r}: {network} covers {address}, an address of this host (the host "
                "itself is never reachable; allow_host_loopback = true lifts this)",
            )


def _refused(address: Address) -> bool:
    return any(address in bad for bad in (*_NOT_UNICAST, *_HOST_ONLY))


def _host_addresses() -> set[Address]:
    import psutil  # type: ignore[import-untyped]

    found: set[Address] = set()
    for addresses in psutil.net_if_addrs().values():
        for item in addresses:
            if item.family in (socket.AF_INET, socket.AF_INET6):
                found.add(ipaddress.ip_address(item.address.split("%")[0]))
    return found


# -- privileged half: the supervisor, before and after it forks the run's init --------------


class RunNetwork:
    """The supervisor's handle on a run's network: the namespace (an fd the init joins) and
    the relay process. Rootless, `netns` is None until `make_namespace` made it."""

    __slots__ = ("cleanup", "netns", "relay")

    def __init__(
        self,
        netns: int | None,
        relay: "RelayProcess",
        cleanup: contextlib.ExitStack | None = None,  # rootless: where make_namespace's fd goes
    ) -> None:
        self.netns = netns
        self.relay = relay
        self.cleanup = cleanup

    def make_namespace(self) -> None:
        """Rootless, in the user namespace the supervisor has just entered (single-threaded,
        before it forks the init): make the run's network namespace, owned by that user
        namespace, so setting it up needs no privilege outside; lo up, each allowed network a
        `local` route, a listener on each allowed address and port; hand the listeners to the
        relay. The supervisor stays in this namespace: it cannot go back to the host's (it
        has no capability there), and needs nothing of it (the relay connects out).
        A no-op as root, where `isolate` made everything."""
        if self.cleanup is None or self.netns is not None:
            return
        from . import net_relay

        plan = self.relay.plan
        with _errors("net.namespace"):
            sc.unshare(sc.CLONE_NEWNET)
            self.netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            self.cleanup.callback(os.close, self.netns)
        with _errors("net.configure"):
            _configure(plan)
        with _errors("net.listen"):
            listeners = net_relay.listen_each(plan)
        try:
            with _errors("net.relay"):
                self.relay.hand_over(listeners)
        finally:
            # Only the relay holds them now; the init, forked next, never has them.
            net_relay.close_all(listeners)

    def finish(self) -> tuple[str, ...]:
        """Stop the relay (the run is over); the bounds the run hit, for Result.warnings."""
        counters, plan, found = self.relay.stop(), self.relay.plan, []
        if counters.over_connections:
            found.append(
                f"network: {counters.over_connections} connection(s) refused: "
                f"max_connections ({plan.max_connections}) were open"
            )
        if counters.exhausted:
            found.append(
                f"network: max_bytes ({plan.max_bytes}) relayed: open connections were cut "
                "and new ones refused"
            )
        return tuple(found)


@contextlib.contextmanager
def isolate(plan: NetworkPlan, *, rootless: bool = False) -> Iterator[RunNetwork | None]:
    """Make the run's network namespace with its allowlist and relay; tear all down on exit.

    Yields None when there is no allowlist: the init then makes a plain namespace of its own.
    The caller must be single-threaded with no running event loop (pyroute2's IPRoute would
    use it, and the relay is forked); it stays in its own network namespace. Rootless, only
    the relay is made here: the caller calls `make_namespace` once in its user namespace.
    """
    if not plan.rules:
        yield None
        return
    from . import net_relay

    if rootless:
        every_port = [rule for rule in plan.rules if rule.port is None]
        if every_port:  # plan_network refuses these without root; a plan made as root, say
            raise UnsupportedError(
                f"{_FIELD}: {every_port[0].network} on every port needs root (BPF sk_lookup)",
                "give each entry a port, or run as root",
            )
        with contextlib.ExitStack() as stack:
            # Forked now, before the supervisor enters its user namespace: the relay stays the
            # caller's user in the host's network namespace. `make_namespace` does the rest.
            with _errors("net.relay"):
                relay = net_relay.RelayProcess([], plan, later=True)
            stack.callback(relay.stop)
            yield RunNetwork(None, relay, stack)
        return

    with contextlib.ExitStack() as stack:
        netns, listeners = _build(plan, stack)
        with _errors("net.relay"):
            relay = net_relay.RelayProcess(listeners, plan)
        stack.callback(relay.stop)
        # Only the relay holds the listeners now: if it dies, connections are refused, not
        # queued; and the init, forked next, never has them.
        net_relay.close_all(listeners)
        yield RunNetwork(netns, relay)


def _build(plan: NetworkPlan, stack: contextlib.ExitStack) -> tuple[int, list[socket.socket]]:
    """Enter a new network namespace, set it up, and come back; its fd and the listeners."""
    from . import net_relay, net_steer

    host = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _errors("net.namespace"):
            sc.unshare(sc.CLONE_NEWNET)
            netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            stack.callback(os.close, netns)
        with _errors("net.configure"):
            _configure(plan)
        with _errors("net.listen"):
            listeners = net_relay.listen(plan)
            stack.callback(net_relay.close_all, listeners)
        stack.enter_context(net_steer.attach(netns, plan.rules, listeners))
    finally:
        sc.setns(host, sc.CLONE_NEWNET)  # the relay connects out from the host's side
        os.close(host)
    return netns, listeners


def _configure(plan: NetworkPlan) -> None:
    """In the run's namespace: lo up, and each allowed network a `local` route on lo, so a
    connection to it is delivered in the namespace (where sk_lookup steers it) and one to
    anything else fails at once (no route: ENETUNREACH)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        for network in dict.fromkeys(rule.network for rule in plan.rules):
            try:
                ipr.route(
                    "add",
                    dst=str(network),
                    family=socket.AF_INET if network.version == 4 else socket.AF_INET6,
                    type="local",
                    scope=254,  # RT_SCOPE_HOST
                    table=255,  # RT_TABLE_LOCAL
                    oif=lo,
                )
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:  # 127.0.0.1 (allow_host_loopback) is local already
                    raise


@contextlib.contextmanager
def _errors(step: str) -> Iterator[None]:
    """Translate OSError and pyroute2's NetlinkError into `SetupError` at this boundary."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        yield
    except NetlinkError as exc:
        raise SetupError(step, exc.code, str(exc)) from None
    except OSError as exc:
        raise SetupError(step, exc.errno or 0, str(exc)) from None


def enter(netns: int | None) -> None:
    """The init's step: join the run's namespace that the supervisor made (allowlist), or
    bring up lo of the fresh one the init unshared (no network)."""
    if netns is None:
        loopback_up()
        return
    sc.setns(netns, sc.CLONE_NEWNET)
    os.close(netns)


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """Bring `lo` up in the current (fresh) network namespace, so the workload's own
    127.0.0.1 works; nothing else exists to reach."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def detect() -> tuple[bool, str]:
    """Can this machine give a run an allowlist? (root, and BPF sk_lookup: Linux >= 5.9;
    without root, entries with a port, if user namespaces work: `namespace.user` says)"""
    if os.geteuid() != 0:
        return True, (
            "rootless: each allowlisted address and port gets its own relayed listener; "
            "an entry without a port (every port) needs root (BPF sk_lookup)"
        )
    from . import net_steer

    try:
        net_steer.probe()
    except UnsupportedError as exc:
        return False, str(exc)
    return True, "BPF sk_lookup works: allowlisted TCP is relayed"

"""The network allowlist, pure: parse entries, resolve names once, refuse what is never a
destination, and plan the run's rules (`plan_network`). Imports nothing else of `net/`.

Loopback, link-local, metadata and the host's own addresses are refused unless
`allow_host_loopback` is set. Names are resolved once, when the run is planned, and pinned
for the run in the sandbox's /etc/hosts. `policy.model` validates entries with `parse_entry`,
and the relay and the BPF steering program take the `Rule`s and `NetworkPlan` made here.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import ipaddress
import os
import re
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from stockade.errors import PolicyError

if TYPE_CHECKING:
    from stockade.policy.model import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]

FIELD = "network.allow"
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
            raise PolicyError(FIELD, str(exc)) from None
        if rootless and entry.port is None:
            raise PolicyError(FIELD, _every_port_needs_root(entry, text))
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
        raise PolicyError(FIELD, f"{text!r}: cannot resolve {entry.name!r}: {exc}") from None
    if not found:
        raise PolicyError(FIELD, f"{text!r}: {entry.name!r} has no address")
    networks = []
    for address in dict.fromkeys(found):
        parsed = _unmapped(ipaddress.ip_address(address))
        networks.append(ipaddress.ip_network(parsed))
    return networks


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _overlap(network: Net, bad: Net) -> str:
    """How an allowed network meets a forbidden one, the right way round."""
    if network.subnet_of(bad):  # type: ignore[arg-type]  # same version: overlaps() held
        return f"{network} is inside {bad}"
    return f"{network} covers {bad}"


def _check_network(network: Net, text: str, local: set[Address] | None) -> None:
    for bad in _NOT_UNICAST:
        if network.overlaps(bad):
            raise PolicyError(FIELD, f"{text!r}: {_overlap(network, bad)}, never a destination")
    if local is None:  # allow_host_loopback
        return
    for bad in _HOST_ONLY:
        if network.overlaps(bad):
            raise PolicyError(
                FIELD,
                f"{text!r}: {_overlap(network, bad)} (loopback, link-local, metadata or "
                "IPv4-mapped addresses are never reachable; allow_host_loopback = true lifts "
                "this for local development)",
            )
    for address in sorted(local, key=str):
        if address in network:
            raise PolicyError(
                FIELD,
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

"""The network plan, pure: allowlist syntax, name pinning, what is never reachable, and the
sk_lookup program's shape. No root, no namespaces, no DNS (the resolver is a double)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade import Policy, PolicyError
from stockade.net import relay as net_relay
from stockade.net.allowlist import NetworkPlan, Rule, parse_entry, plan_network
from stockade.net.steer import program

HOST_ADDRESSES = {ipaddress.ip_address(a) for a in ("192.0.2.10", "2001:db8:ffff::10")}
NAMES = {
    "pypi.example": ["198.51.100.7", "2001:db8:1::7"],
    "evil.example": ["198.51.100.8", "127.0.0.1"],
    "meta.example": ["169.254.169.254"],
    "host.example": ["192.0.2.10"],
    "mapped.example": ["::ffff:198.51.100.9"],
    "localhost.example": ["127.0.0.1"],
}


def resolve(name: str) -> list[str]:
    if name not in NAMES:
        raise OSError(-2, "Name or service not known")
    return NAMES[name]


def plan(*allow: str, loopback: bool = False, rootless: bool = False) -> NetworkPlan:
    network = Policy.load("networked").override(allow_net=allow, allow_host_loopback=loopback)
    return plan_network(
        network.network,
        resolve=resolve,
        host_addresses=lambda: set(HOST_ADDRESSES),
        rootless=rootless,
    )


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


@pytest.mark.parametrize(
    "entry,network,name,port",
    [
        ("pypi.example:443", None, "pypi.example", 443),
        ("PyPI.Example.", None, "pypi.example", None),
        ("10.1.2.3", "10.1.2.3/32", None, None),
        ("10.1.2.3:80", "10.1.2.3/32", None, 80),
        ("10.1.0.0/16", "10.1.0.0/16", None, None),
        ("10.1.0.0/16:8080", "10.1.0.0/16", None, 8080),
        ("2001:db8::1", "2001:db8::1/128", None, None),
        ("[2001:db8::1]:443", "2001:db8::1/128", None, 443),
        ("[2001:db8::/32]:443", "2001:db8::/32", None, 443),
        ("2001:db8::/32:443", "2001:db8::/32", None, 443),
        ("::ffff:10.1.2.3", "10.1.2.3/32", None, None),
        (" 10.1.2.3:65535 ", "10.1.2.3/32", None, 65535),
    ],
)
def test_parse_entry(entry: str, network: str | None, name: str | None, port: int | None) -> None:
    parsed = parse_entry(entry)
    assert parsed.network == (net(network) if network else None)
    assert (parsed.name, parsed.port) == (name, port)


@pytest.mark.parametrize(
    "entry,reason",
    [
        ("", "not a host name"),
        ("host:0", "port"),
        ("host:65536", "port"),
        ("host:http", "port"),
        ("host:", "port"),
        ("10.1.2.3:-1", "port"),
        ("10.1.2.3/16", "host bits"),
        ("10.0.0.0/33", "not a CIDR"),
        ("[2001:db8::1", "[IPV6]:PORT"),
        ("[2001:db8::1]443", "[IPV6]:PORT"),
        ("a..b", "not a host name"),
        ("-a.example", "not a host name"),
        ("a_b c", "not a host name"),
        ("10.1.2", "not a valid IP"),
        ("0x7f.1", "not a valid IP"),
        ("256.1.1.1", "not a valid IP"),
        ("x" * 64 + ".example", "not a host name"),
        ("user@host", "not a host name"),
        ("http://host", "not a CIDR"),
        ("host:80:90", "not an IPv6 address"),
        ("10.0.0.0/", "not a CIDR"),
    ],
)
def test_parse_entry_refuses(entry: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_entry(entry)


@given(st.text(max_size=40))
def test_parse_entry_raises_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_entry(text)


def test_bad_syntax_is_refused_when_the_policy_is_made() -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.load("default").override(allow_net=["pypi.example:99999"])
    assert caught.value.field.startswith("network.allow")
    assert "'pypi.example:99999'" in caught.value.reason


def test_no_allowlist_means_no_rules_and_no_lookup() -> None:
    def fail(name: str) -> list[str]:
        raise AssertionError("nothing to resolve")

    planned = plan_network(Policy.load("default").network, resolve=fail)
    assert planned.rules == () and planned.hosts == ()


def test_names_are_resolved_once_and_pinned() -> None:
    planned = plan("pypi.example:443", "10.1.0.0/16:8080", "203.0.113.5")
    assert planned.rules == (
        Rule(net("198.51.100.7/32"), 443),
        Rule(net("2001:db8:1::7/128"), 443),
        Rule(net("10.1.0.0/16"), 8080),
        Rule(net("203.0.113.5/32"), None),
    )
    assert planned.hosts == (("pypi.example", "198.51.100.7"), ("pypi.example", "2001:db8:1::7"))


def test_mapped_answers_are_pinned_as_ipv4() -> None:
    assert plan("mapped.example:80").hosts == (("mapped.example", "198.51.100.9"),)


def test_bounds_come_from_the_policy() -> None:
    policy = Policy.load("networked").override(allow_net=["203.0.113.5"])
    network = policy.network.model_copy(update={"max_connections": 3, "max_bytes": 1000})
    planned = plan_network(network, resolve=resolve, host_addresses=set, rootless=False)
    assert (planned.max_connections, planned.max_bytes) == (3, 1000)


@pytest.mark.parametrize(
    "entry,says",
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("127.1.2.3:22", "127.0.0.0/8"),
        ("126.0.0.0/7", "127.0.0.0/8"),
        ("::1", "::1/128"),
        ("[::1]:8080", "::1/128"),
        ("169.254.169.254:80", "169.254.0.0/16"),
        ("169.254.0.0/16", "169.254.0.0/16"),
        ("fe80::1", "fe80::/10"),
        ("[fd00:ec2::254]:80", "fd00:ec2::254/128"),
        ("100.100.100.200", "100.100.100.200/32"),
        ("::ffff:0:0/96", "::ffff:0:0/96"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
        ("evil.example:443", "127.0.0.0/8"),
        ("meta.example:80", "169.254.0.0/16"),
        ("192.0.2.10:22", "an address of this host"),
        ("192.0.2.0/24", "an address of this host"),
        ("host.example", "an address of this host"),
        ("2001:db8:ffff::/48:443", "an address of this host"),
    ],
)
def test_the_host_loopback_link_local_and_metadata_are_refused(entry: str, says: str) -> None:
    with pytest.raises(PolicyError) as caught:
        plan(entry)
    assert caught.value.field == "network.allow"
    assert repr(entry) in caught.value.reason and says in caught.value.reason


@pytest.mark.parametrize("entry", ["127.0.0.1:8000", "localhost.example", "192.0.2.10"])
def test_allow_host_loopback_lets_them_through(entry: str) -> None:
    assert plan(entry, loopback=True).rules


@pytest.mark.parametrize(
    "entry", ["0.0.0.0", "0.0.0.0/0:443", "::/0", "[::]:80", "224.0.0.1", "255.255.255.255"]
)
def test_unspecified_multicast_and_broadcast_are_never_destinations(entry: str) -> None:
    for loopback in (False, True):
        with pytest.raises(PolicyError, match="never a destination"):
            plan(entry, loopback=loopback)


def test_unresolvable_names_are_refused() -> None:
    with pytest.raises(PolicyError) as caught:
        plan("nowhere.example:443")
    assert caught.value.field == "network.allow"
    assert "cannot resolve 'nowhere.example'" in caught.value.reason


@pytest.mark.parametrize(
    "entry,example",
    [
        ("pypi.example", "'pypi.example:443'"),
        ("203.0.113.5", "'203.0.113.5:443'"),
        ("10.1.0.0/16", "'10.1.0.0/16:443'"),
        ("2001:db8::1", "'[2001:db8::1]:443'"),
        ("2001:db8::/32", "'[2001:db8::/32]:443'"),
    ],
)
def test_rootless_refuses_an_entry_without_a_port(entry: str, example: str) -> None:
    """Rootless, a listener per allowed address and port serves the allowlist: "every port"
    is refused when the run is planned, naming the entry and what to write instead."""
    with pytest.raises(PolicyError) as caught:
        plan("pypi.example:443", entry, rootless=True)
    assert caught.value.field == "network.allow"
    assert caught.value.reason.startswith(f"{entry!r} allows every port, which needs root")
    assert f"give a port, such as {example}" in caught.value.reason
    assert plan("pypi.example:443", "10.1.0.0/16:8080", rootless=True).rules == (
        Rule(net("198.51.100.7/32"), 443),
        Rule(net("2001:db8:1::7/128"), 443),
        Rule(net("10.1.0.0/16"), 8080),
    )


def test_allows_checks_address_and_port_again() -> None:
    planned = plan("10.1.0.0/16:8080", "203.0.113.5")
    ip = ipaddress.ip_address
    assert planned.allows(ip("10.1.200.3"), 8080)
    assert not planned.allows(ip("10.1.200.3"), 8081)
    assert not planned.allows(ip("10.2.0.1"), 8080)
    assert planned.allows(ip("203.0.113.5"), 1) and planned.allows(ip("203.0.113.5"), 65535)
    forged = NetworkPlan(rules=(Rule(net("0.0.0.0/0")),))  # a plan built by hand, unchecked
    assert not forged.allows(ip("127.0.0.1"), 80)
    assert not forged.allows(ip("169.254.169.254"), 80)
    assert forged.allows(ip("198.51.100.1"), 80)


def test_the_runners_plan_carries_the_network_and_pins() -> None:
    from stockade import Sandbox

    policy = Policy.load("networked").override(allow_net=["203.0.113.5:443"])
    run = Sandbox(policy).planner.plan(["true"], files={}, env={})
    assert run.network.rules == (Rule(net("203.0.113.5/32"), 443),)
    assert (
        Sandbox(Policy.load("default")).planner.plan(["true"], files={}, env={}).network.rules == ()
    )


def _jumps(code: bytes) -> list[tuple[int, int]]:
    found = []
    for index in range(0, len(code), 8):
        opcode, _, offset, _ = struct.unpack("<BBhi", code[index : index + 8])
        if opcode & 0x07 in (0x05, 0x06) and opcode not in (0x85, 0x95):  # jumps, not call/exit
            found.append((index // 8, offset))
    return found


@pytest.mark.parametrize(
    "allow",
    [
        ("10.1.2.3:80",),
        ("2001:db8::1",),
        ("10.1.0.0/16:8080", "[2001:db8:aa::/48]:443", "10.9.9.9"),
    ],
)
def test_the_steering_program_jumps_only_forward(allow: tuple[str, ...]) -> None:
    code = program(plan(*allow).rules, map_fd=3)
    assert len(code) % 8 == 0
    size = len(code) // 8
    assert all(offset >= 0 and where + 1 + offset < size for where, offset in _jumps(code))
    assert code[-8] == 0x95  # ends with exit


def test_the_steering_program_has_the_rules_constants() -> None:
    code = program(plan("10.1.0.0/16:8080").rules, map_fd=3)
    immediates = {struct.unpack("<i", code[i + 4 : i + 8])[0] for i in range(0, len(code), 8)}
    assert 8080 in immediates
    network = struct.unpack("=I", ipaddress.ip_address("10.1.0.0").packed)[0]
    assert network in immediates or network - (1 << 32) in immediates


def _a_host_address() -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    import psutil

    for addresses in psutil.net_if_addrs().values():
        for item in addresses:
            if item.family == socket.AF_INET and not item.address.startswith("127."):
                return ipaddress.ip_address(item.address)
    pytest.skip("this host has no IPv4 address but loopback")


def test_the_relay_refuses_an_address_that_is_now_the_hosts() -> None:
    own = _a_host_address()
    relay = net_relay.Relay([], NetworkPlan(rules=(Rule(net("0.0.0.0/0")),)), socket.socket())
    assert relay._host_local(own)
    assert not relay._host_local(ipaddress.ip_address("192.0.2.1"))  # TEST-NET-1: nobody's
    relaxed = NetworkPlan(rules=(Rule(net("0.0.0.0/0")),), allow_host_loopback=True)
    assert not net_relay.Relay([], relaxed, socket.socket())._host_local(own)


def test_the_relay_checks_what_was_dialled_again() -> None:
    """A connection the plan does not allow (here: to the listener's own 127.0.0.1, as the
    workload could dial it directly) is reset at once, never relayed."""
    plan = NetworkPlan(rules=(Rule(net("198.51.100.0/24"), 443),))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    ours, theirs = socket.socketpair()
    relay = net_relay.Relay([listener], plan, theirs)
    thread = threading.Thread(target=relay.run)
    thread.start()
    try:
        try:  # the reset may come before connect() returns, or after
            with socket.create_connection(listener.getsockname(), timeout=5) as conn:
                answer = conn.recv(64)
        except ConnectionResetError:
            answer = b"reset"
    finally:
        ours.shutdown(socket.SHUT_WR)
        thread.join(10)
        ours.close()
        theirs.close()
    assert answer in (b"", b"reset")
    assert relay.counters() == net_relay.Counters(0, 1, 0, False)
    assert listener.fileno() == -1  # the relay closed its listener on the way out


def test_a_forbidden_range_is_named_the_right_way_round() -> None:
    """An address inside the loopback range is "inside" it; a network around it "covers" it."""
    inside = Policy.load("networked").override(allow_net=["127.0.0.1:80"])
    with pytest.raises(PolicyError, match=r"127\.0\.0\.1/32 is inside 127\.0\.0\.0/8"):
        plan_network(inside.network)
    around = Policy.load("networked").override(allow_net=["126.0.0.0/7:80"])
    with pytest.raises(PolicyError, match=r"126\.0\.0\.0/7 covers 127\.0\.0\.0/8"):
        plan_network(around.network)

"""The run's network namespace: its own, with only `lo`, plus the allowlist's way out.

In the supervisor (single-threaded, no event loop, before it forks the run's init):
`isolate(plan)` makes the run's network namespace, brings `lo` up and makes the allowed
networks local on it (pyroute2), steers connections to them into listening sockets made there
(BPF sk_lookup, `net.steer`), returns to the host's namespace and forks the relay
(`net.relay`), which forwards each accepted connection to the destination it was addressed
to, from the host's side. The init joins the namespace (`kernel.namespaces.enter_network`).
The host's firewall, routes and sysctls are never touched: the namespace, its routes, the
program and the relay all go with the run. The plan itself is `net.allowlist`'s.

Rootless (the supervisor enters a user namespace before it forks the init), neither BPF nor
a way back into the host's namespace is there, so: `isolate` forks the relay first, still
the caller's user in the host's namespace; once in the user namespace the supervisor makes
the run's network namespace, owned by it (`RunNetwork.make_namespace`), with the same routes
and a listener bound to each allowed address and port, hands the listeners to the relay
(SCM_RIGHTS) and stays there. Listeners cannot cover "every port", so rootless, an entry
without a port is refused when the run is planned.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from stockade.errors import SetupError, UnsupportedError
from stockade.kernel import syscalls as sc
from stockade.net.allowlist import FIELD, NetworkPlan

if TYPE_CHECKING:
    from stockade.net.relay import RelayProcess


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
        from stockade.net import relay as net_relay

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
    from stockade.net import relay as net_relay

    if rootless:
        every_port = [rule for rule in plan.rules if rule.port is None]
        if every_port:  # plan_network refuses these without root; a plan made as root, say
            raise UnsupportedError(
                f"{FIELD}: {every_port[0].network} on every port needs root (BPF sk_lookup)",
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
    from stockade.net import relay as net_relay
    from stockade.net import steer as net_steer

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


def detect() -> tuple[bool, str]:
    """Can this machine give a run an allowlist? (root, and BPF sk_lookup: Linux >= 5.9;
    without root, entries with a port, if user namespaces work: `namespace.user` says)"""
    if os.geteuid() != 0:
        return True, (
            "rootless: each allowlisted address and port gets its own relayed listener; "
            "an entry without a port (every port) needs root (BPF sk_lookup)"
        )
    from stockade.net import steer as net_steer

    try:
        net_steer.probe()
    except UnsupportedError as exc:
        return False, str(exc)
    return True, "BPF sk_lookup works: allowlisted TCP is relayed"

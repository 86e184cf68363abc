"""`sandbox mcp`: serve the MCP server (server.py) on stdio, or on streamable HTTP with
`--http [HOST:]PORT`.

HTTP listens on loopback unless told otherwise: the server runs code for whoever reaches it,
and the protocol has no authentication of its own here, so a host beyond loopback is refused
unless `--allow-remote` says so, and then the command says on stderr what that means. On
loopback the SDK checks the Host and Origin headers (no DNS rebinding from a web page).

The command ends on EOF of stdin (stdio) or SIGTERM (exit 0), or SIGINT (130), and closes
every session and warm sandbox on the way out.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import signal
import sys
from collections.abc import Mapping
from typing import Any

from stockade import PolicyError, Sandbox, UnsupportedError

LOOPBACK = "127.0.0.1"


def main(args: argparse.Namespace, policy: Any, env: Mapping[str, str]) -> int:
    """Serve until the client goes (stdio) or a signal comes; exit 0 then."""
    where = parse_http(args.http, args.allow_remote) if args.http is not None else None
    if args.max_sessions < 0 or args.pool < 0:
        raise PolicyError("--max-sessions/--pool", "must be 0 or more")
    try:
        from stockade.mcp.server import StockadeServer
    except ImportError as exc:
        raise UnsupportedError(
            f"the MCP server needs the mcp package ({exc})", hint="pip install 'stockade[mcp]'"
        ) from None
    from opentelemetry import trace  # the SDK's own dependency: it traces each request

    # The command turns the collector off for its one run (cli.main); a server lives long.
    gc.enable()
    # The global provider, as the SDK's spans use: a run's span nests under its tool call's
    # (which continues the client's trace); both are no-ops until OpenTelemetry is set up.
    box = Sandbox(policy, pool=args.pool, tracer_provider=trace.get_tracer_provider())
    server = StockadeServer(box, max_sessions=args.max_sessions, env=env)
    signal.signal(signal.SIGTERM, _stop)  # unwind, closing everything on the way
    try:
        if where is None:
            server.mcp.run("stdio")
        else:
            host, port = where
            if not _loopback(host):
                print(
                    f"sandbox: warning: serving on {host}:{port} beyond loopback: whoever can "
                    "reach it can run code in the sandbox (no authentication)",
                    file=sys.stderr,
                )
            server.mcp.run("streamable-http", host=host, port=port)
    except _Stopped:
        pass
    finally:
        server.close()
    return 0


def parse_http(value: str, allow_remote: bool) -> tuple[str, int]:
    """`--http [HOST:]PORT` as (host, port); HOST is an IP address or `localhost`, loopback
    unless `allow_remote`."""
    host, _, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") or LOOPBACK
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise PolicyError("--http", f"expected [HOST:]PORT with a port in 1-65535, not {value!r}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise PolicyError(
                "--http", f"HOST must be an IP address or localhost: {host!r}"
            ) from None
    if not _loopback(host) and not allow_remote:
        raise PolicyError(
            "--http",
            f"{host} is not a loopback address: whoever reaches it could run code in the "
            "sandbox; add --allow-remote to serve there anyway",
        )
    return host, int(port_text)


def _loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


class _Stopped(Exception):
    """SIGTERM: the ordinary way to stop a server, an exit of 0 after closing."""


def _stop(signum: int, frame: object) -> None:
    raise _Stopped

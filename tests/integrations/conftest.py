"""Fixtures for the framework adapters' tests: a sandbox with a short timeout, and a
model-written probe that reports what confines it.

`python -m pytest` (the README's command) puts the working directory first on sys.path. From
the repository's root, its agents/ folder (installed as `stockade.agents`) would then be found
as the top-level `agents`, the OpenAI Agents SDK's name: the adapters are tested as installed,
so the root leaves sys.path here, before any test module imports a framework."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from adapters_testkit import TIMEOUT, Probe

from stockade import Policy, Sandbox

ROOT = Path(__file__).resolve().parents[2]
sys.path[:] = [p for p in sys.path if Path(os.path.abspath(p or os.curdir)) != ROOT]


@pytest.fixture
def confined() -> Iterator[Sandbox]:
    with Sandbox(Policy.load("default").override(timeout=TIMEOUT)) as box:
        yield box


@pytest.fixture
def host_port() -> Iterator[int]:
    """A TCP port the host listens on at 127.0.0.1: reachable from the host, not from a
    sandbox (its own network namespace has a loopback of its own)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # the pair: from here it connects
        yield port


@pytest.fixture
def probe(host_port: int) -> Probe:
    code = (
        "import os, socket\n"
        "s = socket.socket()\n"
        "s.settimeout(2)\n"
        f"print('uid', os.getuid(), 'connect', s.connect_ex(('127.0.0.1', {host_port})))\n"
    )
    return Probe(code, host_port)

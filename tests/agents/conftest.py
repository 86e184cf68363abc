"""Fixtures for the agent-layer tests: all offline; the only server is our own, on loopback.
Tests that run code use the real sandbox, and are skipped, with the reason, where it cannot
run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_openai import FakeOpenAI

from stockade import Policy, Sandbox, SandboxError


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def real_sandbox() -> None:
    """Skip, naming the cause, when this machine cannot run the sandbox."""
    try:
        result = Sandbox(Policy.load("default").override(timeout=10)).run_code("print('ok')")
    except SandboxError as exc:
        pytest.skip(f"the sandbox cannot run here: {exc}")
    if result.stdout != "ok\n":
        pytest.skip(f"the sandbox cannot run here: {result.status} {result.error}")

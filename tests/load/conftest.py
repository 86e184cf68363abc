"""Markers for the load and fault tests (the leak check itself is in tests/conftest.py)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "no_leak_check: skip the autouse leak check (the test replaces a process)"
    )

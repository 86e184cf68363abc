"""Fixtures of the rootless tests (tests/rootless): the test user, and the cgroup an
administrator delegates to them. The VM job (.ci) runs this folder on a cgroup v2 kernel."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.rootless.users import User, delegate, made_user

BEST_EFFORT = f"/tmp/rootless-test-best-effort-{os.getpid()}.toml"  # not a run dir's name


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a test user")
    with made_user() as made:
        yield made


@pytest.fixture
def delegated(user: User) -> Iterator[User]:
    """The user, with a cgroup delegated by hand: v1 `stockade` directories, or a v2 subtree
    the user's commands start in."""
    yield from delegate(user)


@pytest.fixture
def best_effort() -> Iterator[str]:
    with open(BEST_EFFORT, "w") as file:
        file.write('name = "best-effort"\n[limits]\ncgroups = "best_effort"\n')
    os.chmod(BEST_EFFORT, 0o644)
    yield BEST_EFFORT
    os.unlink(BEST_EFFORT)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Room for the emulated VM of the VM job, where one command as the user takes ~30 s and
    a test makes up to four: the suite's 120 s per test would stop them mid-way."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep) and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(900))

"""Environments, the pure half: requirements and their keys, the [python] section, the plan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stockade import Policy, PolicyError
from stockade.environments import store
from stockade.environments.command import read_requirements
from stockade.environments.shown import caller_site_packages
from stockade.environments.store import Interpreter
from stockade.kernel.mounts import PACKAGES, Overlay
from stockade.spawn.plan import Planner

PYTHON = Interpreter("/usr/bin/python3.11", (3, 11))


@pytest.mark.parametrize(
    "written,normal",
    [
        ("numpy", "numpy"),
        ("  Pandas >= 2 ,< 3 ", "pandas>=2,<3"),
        ("Foo_Bar.baz[B, a]==1.0", "foo-bar-baz[a,b]==1.0"),
        ("attrs; python_version  < '3.12'", "attrs ; python_version < '3.12'"),
        ("pkg @ https://example.org/pkg-1.0.tar.gz", "pkg @ https://example.org/pkg-1.0.tar.gz"),
    ],
)
def test_requirements_are_normalised(written: str, normal: str) -> None:
    assert store.normalise(written) == normal


@pytest.mark.parametrize(
    "bad", ["-r requirements.txt", "--index-url=https://x", "./local/pkg", "/abs/pkg", "", "a\nb"]
)
def test_paths_and_pip_options_are_not_requirements(bad: str) -> None:
    with pytest.raises(ValueError):
        store.normalise(bad)


def test_the_key_is_the_set_the_interpreter_and_the_platform() -> None:
    key = store.key_for(store.requirement_set(["six", "idna"]), PYTHON)
    assert key == store.key_for(store.requirement_set(["IDNA", "six", "six"]), PYTHON)
    assert key != store.key_for(store.requirement_set(["six"]), PYTHON)
    assert key != store.key_for(
        store.requirement_set(["six", "idna"]), PYTHON._replace(version=(3, 12))
    )
    other = PYTHON._replace(executable="/opt/python/bin/python3.11")
    assert key != store.key_for(store.requirement_set(["six", "idna"]), other)


def test_another_platform_is_another_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel built against one machine or C library may not load on another: a cache shared
    between machines (a home on NFS, a CI cache) must not hand one's environment to the
    other."""
    wanted = store.requirement_set(["six"])
    key = store.key_for(wanted, PYTHON)
    here = store.platform_tag()
    libc = os.confstr("CS_GNU_LIBC_VERSION") or "unknown libc"
    assert here == f"Linux-{os.uname().machine} {libc}"
    for elsewhere in (f"Linux-other {libc}", f"Linux-{os.uname().machine} musl"):
        monkeypatch.setattr(store, "platform_tag", lambda tag=elsewhere: tag)
        assert store.key_for(wanted, PYTHON) != key, elsewhere


def test_the_python_section() -> None:
    policy = Policy.from_toml('[python]\nrequirements = ["numpy", "pandas>=2"]\n')
    assert policy.python.requirements == ("numpy", "pandas>=2")
    assert not policy.python.site_packages and policy.python.environment is None
    assert Policy.load("default").override(site_packages=True).python.site_packages
    for toml, field in [
        ('[python]\nenvironment = "a/b"', "python.environment"),
        ('[python]\nrequirements = ["-e ."]', "python.requirements.0"),
        ('[python]\nenvironment = "x"\nrequirements = ["six"]', "python"),
        ("[python]\nsite_packages = 1", "python.site_packages"),
        ("[python]\nvenv = true", "python.venv"),
    ]:
        with pytest.raises(PolicyError) as refused:
            Policy.from_toml(toml)
        assert refused.value.field == field


def test_a_requirements_file(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# data\nnumpy>=2  # arrays\n\n  pandas\n")
    assert read_requirements(str(path)) == ["numpy>=2", "pandas"]
    path.write_text("six\n-r other.txt\n")
    with pytest.raises(PolicyError, match=r"requirements.txt:2: '-r other.txt'"):
        read_requirements(str(path))


def test_the_callers_packages_are_planned_read_only_and_on_sys_path() -> None:
    if not caller_site_packages():
        pytest.skip("not running in a virtualenv")
    planner = Planner(Policy.load("default").override(site_packages=True))
    assert planner.packages == tuple(caller_site_packages())
    plan = planner.plan(["true"], files={}, env={"PYTHONPATH": "/workspace/lib"})
    assert Overlay(planner.packages[0], f"{PACKAGES}/0") in plan.root.mounts
    assert plan.env["PYTHONPATH"] == f"/workspace/lib:{PACKAGES}/0"
    plain = Planner(Policy.load("default")).plan(["true"], files={}, env={})
    assert "PYTHONPATH" not in plain.env
    assert not any(m.target.startswith(PACKAGES) for m in plain.root.mounts)


def test_a_policy_cannot_show_a_path_the_run_makes_itself() -> None:
    with pytest.raises(PolicyError, match=r"overlaps /\.stockade"):
        Policy.from_dict({"filesystem": {"readonly": ["/.stockade/packages"]}})

"""Policies: built-ins load, bad input is refused with the key named, overrides apply."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade import Policy, PolicyError
from stockade.policy.model import builtin_policies, parse_duration, parse_size

POLICY_DIR = Path(__file__).parents[2] / "policies"


@pytest.mark.parametrize("path", sorted(POLICY_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_builtin_policy_loads(path: Path) -> None:
    policy = Policy.load(path.stem)
    assert policy.name == path.stem
    assert policy.description
    assert Policy.load(str(path)) == policy


def test_builtin_policies_are_listed() -> None:
    assert {"default", "strict", "networked"} <= set(builtin_policies())


@pytest.mark.parametrize(
    "data,field",
    [
        ({"limits": {"memory": "256X"}}, "limits.memory"),
        ({"limits": {"memory": "1M"}}, "limits.memory"),  # below the floor
        ({"limits": {"memory": "5T"}}, "limits.memory"),  # absurd
        ({"limits": {"timeout": 0}}, "limits.timeout"),
        ({"limits": {"timeout": -1}}, "limits.timeout"),
        ({"limits": {"timeout": "10 parsecs"}}, "limits.timeout"),
        ({"limits": {"pids": 0}}, "limits.pids"),
        ({"limits": {"pids": True}}, "limits.pids"),
        ({"limits": {"bogus": 1}}, "limits.bogus"),
        ({"bogus": {}}, "bogus"),
        ({"process": {"uid": 0}}, "process.uid"),
        ({"process": {"hostname": "a b"}}, "process.hostname"),
        ({"filesystem": {"tmp_size": "-1M"}}, "filesystem.tmp_size"),
        # joined to the new root by string, a relative path would land outside it
        ({"filesystem": {"readonly": ["usr/share"]}}, "filesystem.readonly.0"),
        ({"filesystem": {"readonly": ["/usr", "../../tmp/x"]}}, "filesystem.readonly.1"),
        ({"filesystem": {"readonly": ["//"]}}, "filesystem.readonly.0"),
        # a run makes these itself: a host path there would collide with its own
        ({"filesystem": {"readonly": ["/usr", "/etc"]}}, "filesystem.readonly.1"),
        ({"filesystem": {"readonly": ["/tmp"]}}, "filesystem.readonly.0"),
        ({"filesystem": {"readonly": ["/proc/self"]}}, "filesystem.readonly.0"),
        ({"filesystem": {"readonly": ["/usr/../workspace"]}}, "filesystem.readonly.0"),
        ({"filesystem": {"python": "yes"}}, "filesystem.python"),
        ({"filesystem": {"readonly": ["/.stockade/bin"]}}, "filesystem.readonly.0"),
        # an absolute path or a command name: a relative path would depend on where one runs
        ({"python": {"interpreter": "bin/python3"}}, "python.interpreter"),
        ({"python": {"interpreter": " "}}, "python.interpreter"),
        ({"python": {"interpreter": 3}}, "python.interpreter"),
        ({"python": {"version": "3.12"}}, "python.version"),
        ({"network": {"allow_host_loopback": 1}}, "network.allow_host_loopback"),
        ({"limits": {"pids": 1}}, "limits.pids"),  # the run's init is one
        ({"process": {"env": {"A B": "x"}}}, "process.env.A B.[key]"),
        ({"process": {"env": {"A": "x\0"}}}, "process.env.A"),
    ],
)
def test_bad_policies_name_the_key(data: dict, field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_dict(data)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_invalid_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[limits\ntimeout = ")
    with pytest.raises(PolicyError, match="invalid TOML"):
        Policy.load(str(path))


def test_unknown_policy_name_lists_the_builtins() -> None:
    with pytest.raises(PolicyError, match=r"unknown policy 'nope'.*default"):
        Policy.load("nope")


def test_override() -> None:
    policy = Policy.load("default").override(
        timeout=5, memory="512M", output_limit="1K", env={"A": "1"}
    )
    assert policy.limits.timeout == 5.0
    assert policy.limits.memory == 512 << 20
    assert policy.limits.output == 1024
    assert policy.process.env["A"] == "1" and policy.process.env["LANG"] == "C.UTF-8"


def test_override_validates() -> None:
    with pytest.raises(PolicyError, match=r"limits\.memory"):
        Policy.load("default").override(memory="lots")
    with pytest.raises(PolicyError, match="unknown override"):
        Policy.load("default").override(colour="blue")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("512K", 512 << 10),
        ("256M", 256 << 20),
        ("1G", 1 << 30),
        ("1.5K", 1536),
        ("64MiB", 64 << 20),
        (4096, 4096),
    ],
)
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,expected", [("1.5", 1.5), ("500ms", 0.5), ("2m", 120.0), (3, 3.0)])
def test_parse_duration(text: object, expected: float) -> None:
    assert parse_duration(text) == expected


@given(st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=True), st.booleans()))
def test_sizes_parse_or_raise_value_error(value: object) -> None:
    with contextlib.suppress(ValueError):
        assert isinstance(parse_size(value), int)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
sections = st.sampled_from(["limits", "filesystem", "process", "network", "name", "x"])
keys = st.sampled_from(["timeout", "memory", "pids", "uid", "allow", "env", "readonly", "y"])


@given(
    st.dictionaries(
        sections, st.one_of(json_values, st.dictionaries(keys, json_values, max_size=3)), max_size=4
    )
)
def test_any_dict_loads_or_raises_policy_error(data: dict) -> None:
    with contextlib.suppress(PolicyError):
        assert isinstance(Policy.from_dict(data), Policy)


def test_the_documented_policy_is_valid_toml_with_every_key() -> None:
    """docs/policies.md's "Every key" block parses as a policy, and names every key there is."""
    text = (Path(__file__).parents[2] / "docs" / "policies.md").read_text()
    block = text.split("## Every key", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    policy = Policy.from_toml(block)
    default, shown = Policy().model_dump(), policy.model_dump()
    assert shown["python"]["interpreter"] == "python3"  # an example, not the default
    shown["python"] = default["python"]
    assert shown == {**default, "name": "mine", "description": policy.description}
    for section in ("limits", "filesystem", "process", "network", "python"):
        for key in type(getattr(policy, section)).model_fields:
            documented = block.split(f"[{section}]", 1)[1]
            # set, or shown commented out where it excludes another key (environment)
            assert f"\n{key} = " in documented or f"\n# {key} = " in documented, key


def test_to_toml_reads_back_as_the_same_policy() -> None:
    for name in builtin_policies():
        assert Policy.from_toml(Policy.load(name).to_toml()) == Policy.load(name)
    odd = Policy.load("default").override(memory="5632K", env={"Q": 'a "b"\n'}, allow_net=["x:1"])
    assert Policy.from_toml(odd.to_toml()) == odd
    with pytest.raises(PolicyError, match=r"limits\.memory"):
        Policy.load("default").override(memory=None).to_toml()

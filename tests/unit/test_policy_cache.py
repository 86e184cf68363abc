"""The command line's cache of validated policies: served when trusted, and only ever what
pydantic itself produced for the same text and flags."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from stockade import Policy, PolicyError, Sandbox
from stockade import disk_cache as cache
from stockade.policy import view as policy_cache
from stockade.policy.view import PolicyView, load_policy, policy_key

FLAGS = {"timeout": "5", "memory": "128M", "allow_net": ("example.org:443",)}


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    where = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(where))
    yield where


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("policy-*.json")) if directory.exists() else []


def _entry(directory: Path) -> Path:
    (entry,) = _entries(directory)
    return entry


def _no_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, validating fails the test: what is served must come from the cache."""

    def refuse(*args: object, **kwargs: object) -> Policy:
        raise AssertionError("validated with pydantic: the cache was not used")

    monkeypatch.setattr(Policy, "from_toml", refuse)


def _assert_same_values(view: Any, model: BaseModel) -> None:
    for name in type(model).model_fields:
        theirs = getattr(model, name)
        mine = getattr(view, name)
        if isinstance(theirs, BaseModel):
            assert isinstance(mine, PolicyView)
            _assert_same_values(mine, theirs)
        else:
            assert mine == theirs, name
            assert isinstance(mine, tuple) == isinstance(theirs, tuple), name
            assert type(mine) is type(theirs) or isinstance(theirs, dict), name


def test_a_miss_validates_and_stores_then_a_hit_serves_the_same_values(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_policy("networked", FLAGS)
    assert isinstance(first, Policy)
    assert first == Policy.load("networked").override(**FLAGS)
    entry = _entry(directory)
    assert entry.stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700
    _no_pydantic(monkeypatch)
    second = load_policy("networked", FLAGS)
    assert isinstance(second, PolicyView)
    assert second.name == "networked"
    assert second.network.allow == ("example.org:443",)
    _assert_same_values(second, first)


def test_the_view_is_read_only(directory: Path) -> None:
    load_policy("default", {})
    view = load_policy("default", {})
    assert isinstance(view, PolicyView)
    with pytest.raises(AttributeError):
        view.name = "other"
    with pytest.raises(AttributeError):
        view.limits.timeout = 1000.0
    with pytest.raises(AttributeError):
        del view.limits
    with pytest.raises(TypeError):
        view.process.env["LD_PRELOAD"] = "/x.so"  # type: ignore[index]
    assert isinstance(view.filesystem.readonly, tuple)
    with pytest.raises(AttributeError):
        _ = view.no_such_field


def test_a_sandbox_plans_the_same_run_from_the_view(directory: Path) -> None:
    model = load_policy("strict", {"timeout": "3"})
    view = load_policy("strict", {"timeout": "3"})
    assert isinstance(view, PolicyView)
    argv = ["python3", "-c", "print(1)"]
    assert Sandbox(view).planner.plan(argv, files={}, env={}) == Sandbox(model).planner.plan(
        argv, files={}, env={}
    )


@pytest.mark.parametrize(
    "flags",
    [{"timeout": "0"}, {"memory": "lots"}, {"pids": "0"}, {"allow_net": ("bad entry!",)}],
)
def test_invalid_flags_are_never_stored_and_fail_as_before(
    directory: Path, monkeypatch: pytest.MonkeyPatch, flags: dict[str, Any]
) -> None:
    with pytest.raises(PolicyError) as cached:
        load_policy("default", flags)
    assert _entries(directory) == []
    monkeypatch.setenv(cache.CACHE_ENV, "")
    with pytest.raises(PolicyError) as uncached:
        Policy.load("default").override(**flags)
    assert str(cached.value) == str(uncached.value)
    assert cached.value.field == uncached.value.field


@pytest.mark.parametrize("text", ["[limits]\ntimeout = = 3\n", "[limits]\nbogus = 1\n"])
def test_an_invalid_policy_file_is_never_stored(directory: Path, tmp_path: Path, text: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    for _ in range(2):  # the second time too: nothing was kept to serve
        with pytest.raises(PolicyError):
            load_policy(str(bad), {})
    assert _entries(directory) == []


def _stored_then_damaged(directory: Path, damage: str) -> None:
    load_policy("default", {})
    entry = _entry(directory)
    if damage == "group-writable":
        entry.chmod(0o620)
    elif damage == "flipped":
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0x01
        entry.write_bytes(bytes(data))
    elif damage == "another kind":  # whole and checksummed, but not a policy entry
        key = entry.name.removeprefix("policy-").removesuffix(".json")
        entry.write_bytes(cache.seal(b"stockade-seccomp-v1\n", key, b"{}"))
    elif damage == "not ours":  # a valid entry of a policy, but filed under another key
        other = load_policy("strict", {})
        assert isinstance(other, Policy)
        (stranger,) = (path for path in _entries(directory) if path != entry)
        entry.write_bytes(stranger.read_bytes())
    elif damage == "symlink":
        elsewhere = directory.parent / "planted.json"
        entry.rename(elsewhere)
        entry.symlink_to(elsewhere)
    elif damage == "foreign":
        os.chown(entry, 65534, 65534)


def _default_text_and_flags() -> tuple[str, dict[str, Any]]:
    from stockade.policy.source import read_policy_text

    return read_policy_text("default")[0], {}


@pytest.mark.parametrize(
    "damage",
    [
        "group-writable",
        "flipped",
        "another kind",
        "not ours",
        "symlink",
        pytest.param(
            "foreign",
            marks=pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown"),
        ),
    ],
)
def test_an_untrusted_or_damaged_entry_is_ignored(directory: Path, damage: str) -> None:
    _stored_then_damaged(directory, damage)
    served = load_policy("default", {})
    assert isinstance(served, Policy)  # validated again, not read from the entry
    assert served.limits.memory == 256 << 20


def _always_validated(where: Path) -> None:
    """Each load is validated by pydantic, and nothing is written to `where`."""
    for _ in range(2):
        assert isinstance(load_policy("default", {}), Policy)
    assert list(where.iterdir()) == []


def test_a_directory_writable_by_others_is_not_used(directory: Path) -> None:
    directory.mkdir(mode=0o700)
    directory.chmod(0o777)
    _always_validated(directory)


def test_an_empty_setting_turns_the_cache_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cache.CACHE_ENV, "")
    monkeypatch.chdir(tmp_path)
    _always_validated(tmp_path)


def test_the_key_follows_the_text_the_flags_and_the_code(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, _ = _default_text_and_flags()
    key = policy_key(text, {"timeout": "5"})
    assert key is not None
    assert policy_key(text, {"timeout": "5"}) == key
    assert policy_key(text, {"timeout": "6"}) != key
    assert policy_key(text, {"timeout": "5", "pids": "8"}) != key
    assert policy_key(text, {}) != key
    assert policy_key(text + "\n# a comment\n", {"timeout": "5"}) != key
    monkeypatch.setattr(policy_cache, "__version__", "999")
    assert policy_key(text, {"timeout": "5"}) != key


def test_the_key_follows_the_validating_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, _ = _default_text_and_flags()
    before = policy_key(text, {})
    changed = tmp_path / "model.py"
    changed.write_bytes(Path(policy_cache._origin("stockade.policy.model")).read_bytes() + b"#\n")
    origin = policy_cache._origin
    monkeypatch.setattr(
        policy_cache,
        "_origin",
        lambda name: str(changed) if name == "stockade.policy.model" else origin(name),
    )
    assert policy_key(text, {}) != before


def test_a_validating_module_that_is_gone_is_an_error_not_a_cache_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text, _ = _default_text_and_flags()
    monkeypatch.setattr(policy_cache, "_VALIDATING_MODULES", ("stockade.policy.renamed",))
    with pytest.raises(ModuleNotFoundError, match=r"stockade\.policy\.renamed"):
        policy_key(text, {})


def test_flags_in_another_order_share_an_entry(directory: Path) -> None:
    load_policy("default", {"timeout": "5", "pids": "8"})
    assert isinstance(load_policy("default", {"pids": "8", "timeout": "5"}), PolicyView)
    assert len(_entries(directory)) == 1


def test_old_entries_are_pruned(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_cache, "_KEEP", 3)
    for seconds in range(1, 6):
        load_policy("default", {"timeout": str(seconds)})
    assert len(_entries(directory)) == 3
    assert isinstance(load_policy("default", {"timeout": "5"}), PolicyView)  # the newest stay

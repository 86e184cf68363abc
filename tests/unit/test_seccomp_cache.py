"""The on-disk cache of compiled seccomp programs: used when trusted, ignored otherwise."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade.kernel import seccomp

FAKE = (b"\x06\x00\x00\x00\x00\x00\xff\x7f" * 3, b"\x06\x00\x00\x00\x00\x00\xff\x7f")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "cache"
    monkeypatch.setenv(seccomp.CACHE_ENV, str(directory))
    seccomp.compile_filters.cache_clear()
    yield directory
    seccomp.compile_filters.cache_clear()


def _compiles(monkeypatch: pytest.MonkeyPatch, programs: tuple[bytes, ...]) -> list[int]:
    calls: list[int] = []

    def fake() -> tuple[bytes, ...]:
        calls.append(1)
        return programs

    monkeypatch.setattr(seccomp, "_compile", fake)
    return calls


def _fresh() -> tuple[bytes, ...]:
    seccomp.compile_filters.cache_clear()
    return seccomp.compile_filters()


def _entry(directory: Path) -> Path:
    (entry,) = directory.glob("seccomp-*.bpf")
    return entry


def test_a_second_process_reads_what_the_first_compiled(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = seccomp.compile_filters()
    entry = _entry(cache)
    assert entry.stat().st_mode & 0o777 == 0o600
    assert cache.stat().st_mode & 0o777 == 0o700
    calls = _compiles(monkeypatch, FAKE)
    assert _fresh() == real
    assert calls == []


def test_writable_by_others_is_ignored_and_replaced(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compiles(monkeypatch, FAKE)
    _fresh()
    entry = _entry(cache)
    entry.chmod(0o666)
    other = (FAKE[1], FAKE[0])
    calls = _compiles(monkeypatch, other)
    assert _fresh() == other
    assert calls == [1]
    assert _entry(cache).stat().st_mode & 0o777 == 0o600  # rewritten, atomically, as ours


def test_a_directory_writable_by_others_is_not_used(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.mkdir(mode=0o700)
    cache.chmod(0o777)
    calls = _compiles(monkeypatch, FAKE)
    _fresh()
    _fresh()
    assert calls == [1, 1]
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "key"])
def test_a_damaged_entry_is_ignored(
    cache: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    _compiles(monkeypatch, FAKE)
    _fresh()
    entry = _entry(cache)
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "empty":
        data = bytearray()
    else:  # a valid entry for another key, under this key's name
        data = bytearray(seccomp._cache_encode("0" * 64, FAKE))
    entry.write_bytes(bytes(data))
    other = (FAKE[1], FAKE[0])
    calls = _compiles(monkeypatch, other)
    assert _fresh() == other
    assert calls == [1]


def test_a_symlinked_entry_is_not_followed(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _compiles(monkeypatch, FAKE)
    _fresh()
    entry = _entry(cache)
    elsewhere = cache.parent / "planted.bpf"
    entry.rename(elsewhere)
    entry.symlink_to(elsewhere)
    other = (FAKE[1], FAKE[0])
    calls = _compiles(monkeypatch, other)
    assert _fresh() == other
    assert calls == [1]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_an_entry_owned_by_someone_else_is_ignored(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compiles(monkeypatch, FAKE)
    _fresh()
    os.chown(_entry(cache), 65534, 65534)
    other = (FAKE[1], FAKE[0])
    calls = _compiles(monkeypatch, other)
    assert _fresh() == other
    assert calls == [1]


def test_the_key_follows_the_rules(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = seccomp._cache_key()
    assert before is not None
    monkeypatch.setattr(seccomp, "ALLOW", (*seccomp.ALLOW, "acct"))
    assert seccomp._cache_key() != before


def test_an_empty_setting_turns_the_cache_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(seccomp.CACHE_ENV, "")
    calls = _compiles(monkeypatch, FAKE)
    try:
        _fresh()
        _fresh()
    finally:
        seccomp.compile_filters.cache_clear()
    assert calls == [1, 1]


def test_without_pyseccomp_there_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # So a missing binding is still reported (UnsupportedError) rather than hidden by a cache.
    monkeypatch.setitem(__import__("sys").modules, "pyseccomp", None)
    assert seccomp._cache_key() is None

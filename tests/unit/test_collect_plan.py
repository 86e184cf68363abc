"""Collect patterns (spawn/collect.py, the pure half): globs as pathlib has them, refused up
front when they could name something outside /workspace; and the host's side, which takes
what comes out as untrusted data."""

from __future__ import annotations

import base64
import re

import pytest

from stockade import PolicyError
from stockade.spawn.collect import Collected, plan_collect

NAMES = [
    "main.py",
    "chart.png",
    ".hidden.png",
    "out/a.png",
    "out/deep/b.png",
    "out/deep/c.txt",
    "other/out/d.png",
    "[x].png",
]


def matching(collect: object) -> list[str]:
    pattern = plan_collect(collect)  # type: ignore[arg-type]
    assert pattern is not None
    return [name for name in NAMES if re.fullmatch(pattern, name)]


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["*.png"], ["chart.png", ".hidden.png", "[x].png"]),
        (["out/*"], ["out/a.png"]),
        (["out/**"], ["out/a.png", "out/deep/b.png", "out/deep/c.txt"]),
        (["**/*.png"], [n for n in NAMES if n.endswith(".png")]),
        (["out/**/*.txt"], ["out/deep/c.txt"]),
        (["**/out/*.png"], ["out/a.png", "other/out/d.png"]),
        (["./out/*.png", "main.py"], ["main.py", "out/a.png"]),
        (["?ain.py"], ["main.py"]),
        (["out/deep/[bc].*"], ["out/deep/b.png", "out/deep/c.txt"]),
        (["out/deep/[!b].*"], ["out/deep/c.txt"]),
        (["\\[x].png"], []),  # no escapes, as in pathlib: `\\` is a character of the name
        (["*"], ["main.py", "chart.png", ".hidden.png", "[x].png"]),
    ],
)
def test_globs_match_as_pathlib_does(patterns: list[str], expected: list[str]) -> None:
    assert matching(patterns) == expected


def test_true_is_every_file_and_nothing_is_none() -> None:
    assert matching(True) == NAMES
    assert plan_collect(None) is None
    assert plan_collect(False) is None
    assert plan_collect([]) is None


@pytest.mark.parametrize(
    "bad",
    [["../x"], ["out/../../etc/passwd"], ["/etc/shadow"], [""], ["."], ["out/"], ["a\0b"], [3]],
)
def test_a_pattern_that_escapes_or_names_nothing_is_refused(bad: list[object]) -> None:
    with pytest.raises(PolicyError) as caught:
        plan_collect(bad)  # type: ignore[arg-type]
    assert caught.value.field == "collect"


def test_a_single_string_is_refused() -> None:
    with pytest.raises(PolicyError, match="list of glob patterns"):
        plan_collect("*.png")  # type: ignore[arg-type]


def chunk(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_collected_holds_the_files_and_names_what_was_left_out() -> None:
    got = Collected(100)
    got.take("file", "a/b.bin", "")
    got.take("file", "a/b.bin", chunk(b"\0\1"))
    got.take("file", "a/b.bin", chunk(b"\2"))
    got.take("end", "a/b.bin", "")
    got.take("file", "empty", "")
    got.take("end", "empty", "")
    got.take("left_out", "link", "a symbolic link: never followed")
    assert got.files() == {"a/b.bin": b"\0\1\2", "empty": b""}
    (warning,) = got.warnings()
    assert "1 matching entries left out: link (a symbolic link" in warning


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "", "a//b", "a\0"])
def test_collected_drops_names_outside_the_workspace(name: str) -> None:
    got = Collected(100)
    got.take("file", name, chunk(b"x"))
    got.take("left_out", name, "why")
    assert got.files() == {}
    assert got.warnings() == ()


def test_a_file_cut_off_by_the_runs_end_does_not_come_back() -> None:
    got = Collected(100)
    got.take("file", "whole", chunk(b"all of it"))
    got.take("end", "whole", "")
    got.take("file", "cut", chunk(b"the first half"))  # and no "end": the run was ended
    assert got.files() == {"whole": b"all of it"}
    assert "cut (cut off: the run ended while it was read)" in got.warnings()[0]


def test_a_run_ended_at_a_limit_brings_back_nothing() -> None:
    got = Collected(100)
    got.take("file", "whole", chunk(b"all of it"))
    got.take("end", "whole", "")
    got.abandon("ended at a limit")
    assert got.files() == {}
    assert "whole (ended at a limit)" in got.warnings()[0]


@pytest.mark.parametrize(
    ("repeated", "plain"), [("**/**/**/*.png", "**/*.png"), ("a/***b", "a/*b"), ("**/**", "**")]
)
def test_repeated_stars_make_the_expression_of_the_plain_pattern(repeated: str, plain: str) -> None:
    # Repeats would let the expression backtrack through every split of a deep name.
    assert plan_collect([repeated]) == plan_collect([plain])


def test_collected_keeps_to_its_cap_whatever_the_other_side_sends() -> None:
    got = Collected(10)
    got.take("file", "a", chunk(b"123"))  # 1 + 3 bytes
    got.take("file", "b", chunk(b"12345"))  # 1 + 5: 10 in all
    got.take("file", "b", chunk(b"6"))  # over: b goes, and nothing more is taken
    got.take("file", "c", "")
    for name in "abc":
        got.take("end", name, "")
    assert got.files() == {"a": b"123"}
    assert got.size <= 10
    assert "b (over limits.collect_size)" in got.warnings()[0]


def test_collected_drops_what_is_not_base64() -> None:
    got = Collected(100)
    got.take("file", "a", "not base64!")
    got.take("file", 3, chunk(b"x"))
    assert got.files() == {}

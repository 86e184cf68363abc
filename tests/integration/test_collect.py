"""Files back out (`collect=`): the matching regular files of /workspace come back in
`Result.files`, in fresh, prepared and pooled runs alike, up to `limits.collect_size`; what is
over it is named in the warnings; a bad pattern is refused before anything runs. What
collection never does (follow a link, open a fifo) is tests/security/test_collect_links.py's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from stockade import Policy, PolicyError, Result, Sandbox, Status
from stockade.spawn import running
from tests.conftest import needs_root

pytestmark = needs_root()

MAKE = """
import os
os.makedirs("out/deep/er", exist_ok=True)
open("out/chart.png", "wb").write(bytes(range(256)) * 4)
open("out/deep/er/table.csv", "w").write("a,b\\n1,2\\n")
open("out/deep/notes.txt", "w").write("notes")
open("top.png", "wb").write(b"\\x89PNG\\0\\xff")
open(".hidden", "w").write("h")
open("empty", "w").close()
print("made")
"""
MADE = {
    "main.py": MAKE.encode(),
    "out/chart.png": bytes(range(256)) * 4,
    "out/deep/er/table.csv": b"a,b\n1,2\n",
    "out/deep/notes.txt": b"notes",
    "top.png": b"\x89PNG\0\xff",
    ".hidden": b"h",
    "empty": b"",
}


def _policy(**limits: object) -> Policy:
    return Policy.load("default").override(**{"timeout": 20, **limits})


@pytest.fixture(params=["fresh", "prepared", "pooled"])
def runner(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A sandbox whose run_code goes each of the three ways; prepared: its second run on."""
    kind = request.param
    with Sandbox(_policy(), pool=1 if kind == "pooled" else 0, prefork=kind == "prepared") as box:
        if kind == "prepared":
            box.run_code("pass")  # the next run is prepared after this one
        yield box


def _ok(result: Result) -> Result:
    assert result.status is Status.OK, result
    return result


def test_every_file_comes_back_with_true(runner: Sandbox) -> None:
    result = _ok(runner.run_code(MAKE, collect=True))
    assert result.files == MADE
    assert result.warnings == ()


@pytest.mark.parametrize(
    ("patterns", "names"),
    [
        (["*.png"], ["top.png"]),
        (["**/*.png"], ["out/chart.png", "top.png"]),
        (["out/**"], ["out/chart.png", "out/deep/er/table.csv", "out/deep/notes.txt"]),
        (["out/*/*.txt", "empty"], ["empty", "out/deep/notes.txt"]),
        (["nothing-matches"], []),
    ],
)
def test_the_files_that_match_come_back(
    runner: Sandbox, patterns: list[str], names: list[str]
) -> None:
    result = _ok(runner.run_code(MAKE, collect=patterns))
    assert result.files == {name: MADE[name] for name in names}


def test_without_collect_nothing_comes_back(runner: Sandbox) -> None:
    result = _ok(runner.run_code(MAKE))
    assert result.files == {}
    assert result.to_dict()["files"] == {}


@pytest.mark.parametrize("pool", [0, 1])
def test_files_over_the_cap_are_left_out_and_named(pool: int) -> None:
    code = "for name, n in (('a', 600), ('b', 600), ('c', 100)): open(name, 'wb').write(b'x' * n)"
    with Sandbox(_policy(collect_size=1000), pool=pool) as box:
        result = _ok(box.run_code(code, collect=["a", "b", "c"]))
    # Whole files, in name order: a fits, b would not, c still does.
    assert result.files == {"a": b"x" * 600, "c": b"x" * 100}
    (warning,) = result.warnings
    assert "1 matching entries left out: b (600 bytes: over limits.collect_size)" in warning


def test_the_json_carries_names_and_sizes() -> None:
    result = _ok(Sandbox(_policy(), prefork=False).run_code(MAKE, collect=["**/*.png"]))
    assert result.to_dict()["files"] == {"out/chart.png": 1024, "top.png": 6}


def test_a_shell_run_and_arun_collect_too() -> None:
    box = Sandbox(_policy(), prefork=False)
    made = "mkdir -p d && printf 'x' > d/f && echo ok"
    assert _ok(box.run(["sh", "-c", made], collect=["d/*"])).files == {"d/f": b"x"}
    result = asyncio.run(box.arun_code("open('a', 'w').write('a')", collect=["a"]))
    assert _ok(result).files == {"a": b"a"}
    result = asyncio.run(box.arun(["sh", "-c", made], collect=True))
    assert set(_ok(result).files) == {"d/f"}


def test_a_failed_or_killed_run_still_says_what_it_is() -> None:
    box = Sandbox(_policy(timeout=3), prefork=False)  # room for a slow start (an emulated VM)
    failed = box.run_code("open('a', 'w').write('a'); raise SystemExit(3)", collect=["a"])
    assert failed.status is Status.NONZERO_EXIT
    assert failed.files == {"a": b"a"}  # what the program left before it failed comes back
    killed = box.run_code("open('a', 'w').write('a')\nwhile True: pass", collect=["a"])
    assert killed.status is Status.TIMEOUT
    assert killed.files == {}  # the run was killed, its init with it: nothing to collect


@pytest.mark.parametrize(
    "bad", [["../etc/passwd"], ["/etc/shadow"], [""], ["out/../../x"], "*.png"]
)
@pytest.mark.parametrize("pool", [0, 1])
def test_a_bad_pattern_is_refused_before_anything_runs(
    bad: object, pool: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("a run was started")

    with Sandbox(_policy(), pool=pool) as box:
        if box.pool is None:
            monkeypatch.setattr(running, "start", no_run)
        else:
            monkeypatch.setattr(box.pool, "_acquire", no_run)
        with pytest.raises(PolicyError) as caught:
            box.run_code("print(1)", collect=bad)  # type: ignore[arg-type]
    assert caught.value.field == "collect"


@pytest.mark.parametrize("pool", [0, 1])
def test_a_run_ended_at_its_time_limit_brings_back_no_file(pool: int) -> None:
    spin = "open('made.txt', 'w').write('half a result')\nwhile True: pass\n"
    with Sandbox(_policy().override(timeout=1), pool=pool) as box:
        result = box.run_code(spin, collect=True)
    assert result.status == Status.TIMEOUT
    assert result.files == {}

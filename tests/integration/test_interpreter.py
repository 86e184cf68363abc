"""The workload's Python is exactly the one asked for, with its own standard library: the
interpreter running Stockade by default, another one when the policy names it, in fresh runs,
prepared runs, pools and sessions alike; and commands are found on the workload's PATH, as a
shell finds them."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade import Policy, PolicyError, Sandbox
from stockade.policy.model import DEFAULT_READONLY
from tests.conftest import needs_root

pytestmark = needs_root()

HOST_BINARY = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)

# Standard-library modules left out of the import test, and why. `sys.stdlib_module_names`
# already leaves out CPython's test modules (`test`, `__hello__`, `_testcapi`, ...).
EXCLUDED = {
    "antigravity": "opens a web browser",
    "this": "prints the Zen of Python",
    "idlelib": "IDLE, a GUI",
    "tkinter": "needs a display (and Tk)",
    "_tkinter": "needs a display (and Tk)",
    "turtle": "needs a display (and Tk)",
    "turtledemo": "needs a display (and Tk)",
}
MUST_IMPORT = {
    "ssl", "_ssl", "sqlite3", "ctypes", "decimal", "lzma", "zlib", "hashlib",
    "multiprocessing", "bz2", "readline", "curses",
}  # fmt: skip

# Imports each module of MODULES, then says which failed, and what this Python is.
IMPORT_ALL = """
import importlib, json, os, sys, warnings
warnings.simplefilter("ignore")  # deprecated modules still import
failed = {}
for name in MODULES:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed[name] = repr(exc)
print(json.dumps({"failed": failed, "version": sys.version,
                  "binary": os.path.realpath(sys.executable)}))
"""


def _host_importable() -> list[str]:
    """The standard-library modules that import on the host, in a process of their own."""
    names = sorted(name for name in sys.stdlib_module_names if name not in EXCLUDED)
    done = subprocess.run(
        [sys.executable, "-I", "-c", _program(names)],
        capture_output=True,
        check=True,
        timeout=120,
    )
    failed = json.loads(done.stdout.splitlines()[-1])["failed"]
    return [name for name in names if name not in failed]


@pytest.fixture(scope="module")
def stdlib() -> list[str]:
    names = _host_importable()
    assert not MUST_IMPORT - set(names), "the host's Python lacks a module the test needs"
    return names


def _program(modules: list[str]) -> str:
    return f"MODULES = {modules!r}\n{IMPORT_ALL}"


def _policy(**flags: object) -> Policy:
    # Importing the whole standard library takes more than the default's seconds and memory.
    return Policy.load("default").override(timeout=60, cpu_time=60, memory="1G", **flags)


def _answers(mode: str, code: str, policy: Policy) -> Iterator[str]:
    """What `code` prints in each run of `mode`."""
    if mode == "fresh":
        with Sandbox(policy, prefork=False) as box:
            yield _ok(box.run_code(code))
    elif mode == "prepared":  # from the third run on, each was prepared ahead
        with Sandbox(policy, prefork=True) as box:
            for _ in range(3):
                yield _ok(box.run_code(code))
    elif mode == "pool":
        with Sandbox(policy, pool=1) as box:
            yield _ok(box.run_code(code))
    else:
        with Sandbox(policy) as box, box.session() as session:
            yield _ok(session.run(code))


def _ok(result: object) -> str:
    assert result.ok, (result.status, result.stderr[-2000:])  # type: ignore[attr-defined]
    return result.stdout  # type: ignore[attr-defined]


MODES = ["fresh", "prepared", "pool", "session"]


@pytest.mark.parametrize("mode", MODES)
def test_every_stdlib_module_that_imports_outside_imports_inside(
    mode: str, stdlib: list[str]
) -> None:
    assert len(stdlib) > 200  # the standard library, not a handful of modules
    for printed in _answers(mode, _program(stdlib), _policy()):
        answer = json.loads(printed.splitlines()[-1])
        assert answer["failed"] == {}
        assert (answer["version"], answer["binary"]) == (sys.version, HOST_BINARY)


def _other_pythons() -> list[str]:
    mine = "{}.{}".format(*sys.version_info)
    found = glob.glob("/root/.pyenv/versions/3.*/bin/python3")
    return sorted(p for p in found if not Path(p).parent.parent.name.startswith(f"{mine}."))


@pytest.fixture(scope="module")
def other_python() -> str:
    others = _other_pythons()
    if not others:
        pytest.skip("no Python 3 but the running one's version under /root/.pyenv/versions")
    # The newest: the furthest from the running one (3.11 here).
    return max(others, key=lambda p: tuple(map(int, Path(p).parent.parent.name.split("."))))


def _version_of(python: str) -> str:
    done = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True)
    return done.stdout.decode().strip()


WHO = "import os, ssl, sqlite3, sys; print(sys.version); print(os.path.realpath(sys.executable))"


@pytest.mark.parametrize("mode", MODES)
def test_a_policy_names_another_interpreter(mode: str, other_python: str) -> None:
    expected = f"{_version_of(other_python)}\n{os.path.realpath(other_python)}\n"
    for printed in _answers(mode, WHO, _policy(interpreter=other_python)):
        assert printed == expected


def test_the_command_line_runs_the_policys_interpreter(tmp_path: Path, other_python: str) -> None:
    expected = f"{_version_of(other_python)}\n{os.path.realpath(other_python)}\n"
    policy = tmp_path / "other.toml"
    policy.write_text(f'[python]\ninterpreter = "{other_python}"\n')
    command = [sys.executable, "-m", "stockade", "run"]
    for options in (["--policy", str(policy)], ["--python", other_python]):
        argv = [*command, *options, "--", "python3", "-c", WHO]
        done = subprocess.run(argv, capture_output=True, timeout=60)
        assert (done.returncode, done.stdout.decode()) == (0, expected), done.stderr


def test_a_name_is_looked_up_on_the_hosts_path(
    monkeypatch: pytest.MonkeyPatch, other_python: str
) -> None:
    name = os.path.basename(os.path.realpath(other_python))  # python3.X
    monkeypatch.setenv("PATH", f"{os.path.dirname(other_python)}:{os.environ['PATH']}")
    with Sandbox(_policy(interpreter=name), prefork=False) as box:
        assert box.run_code(WHO).stdout.splitlines()[-1] == os.path.realpath(other_python)


def test_pools_and_sessions_refuse_a_python_older_than_the_zygote_needs() -> None:
    older = sorted(glob.glob("/root/.pyenv/versions/3.[89].*/bin/python3"))
    if not older:
        pytest.skip("no Python 3.8 or 3.9 under /root/.pyenv/versions")
    policy = _policy(interpreter=older[0])
    too_old = r"pools and sessions need Python 3\.10 or later"
    with pytest.raises(PolicyError, match=too_old):
        Sandbox(policy, pool=1, prefork=False)
    with Sandbox(policy, prefork=False) as box:
        assert box.run_code("import sys; print(sys.version_info[0])").stdout == "3\n"
        with pytest.raises(PolicyError, match=too_old):
            box.session()


@pytest.mark.parametrize(
    ("named", "reason"),
    [
        ("/nonexistent/python3", "No such file or directory"),
        ("/bin/true", "is not a Python 3 interpreter"),
        ("/bin/false", "/bin/false did not run as Python 3 (exit status 1; it said nothing)"),
        ("/etc/passwd", "is not an executable file"),
        ("/usr/bin", "is not an executable file"),
        ("no-such-python-anywhere", "is not a command on this machine's PATH"),
    ],
)
def test_an_interpreter_that_cannot_be_used_is_refused_up_front(named: str, reason: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Sandbox(Policy.load("default").override(interpreter=named))
    assert caught.value.field == "python.interpreter"
    assert reason in caught.value.reason


def test_without_an_interpreter_no_link_is_made() -> None:
    policy = Policy.from_dict({"filesystem": {"python": False}})
    with Sandbox(policy, prefork=False) as box:
        done = box.run(["sh", "-c", 'echo "$PATH"; ls /.stockade'])
    assert done.stdout == "/usr/local/bin:/usr/bin:/bin\n" and done.exit_code == 2
    with pytest.raises(PolicyError, match=r"filesystem\.python = false"):
        Sandbox(Policy.from_dict({"filesystem": {"python": False}, "python": {"interpreter": "x"}}))


@pytest.fixture
def commands() -> Iterator[Path]:
    """A host directory (not under /tmp, which each run makes itself) of test commands:
    `both` is executable in `executable/` and not in `plain/`, `plain` is only in `plain/`."""
    base = Path(tempfile.mkdtemp(dir="/var/tmp"))
    base.chmod(0o755)  # for the workload's user
    for kind, mode in (("executable", 0o755), ("plain", 0o644)):
        (base / kind).mkdir(parents=True, exist_ok=True)
        for name in ("both", kind):
            (base / kind / name).write_text(f"#!/bin/sh\necho {kind} {name}\n")
            (base / kind / name).chmod(mode)
    yield base
    shutil.rmtree(base)


def test_commands_are_found_on_the_workloads_path(commands: Path) -> None:
    policy = Policy.from_dict({"filesystem": {"readonly": [*DEFAULT_READONLY, str(commands)]}})
    here = f"{commands}/plain:{commands}/executable"
    with Sandbox(policy, prefork=False) as box:

        def run(argv: list[str], path: str = here) -> tuple[int | None, str]:
            done = box.run(argv, env={"PATH": path}, files={"local": "#!/bin/sh\necho local\n"})
            return done.exit_code, done.stdout

        # Only on the workload's PATH: the run's init, which starts it, has none of it.
        assert run(["executable"]) == (0, "executable executable\n")
        assert run(["both"]) == (0, "executable both\n")  # a file it cannot execute is passed
        assert run(["plain"]) == (126, "")  # only one it cannot execute
        assert run(["no-such-command"]) == (127, "")
        assert run(["local"], path="/usr/bin") == (127, "")  # not the working directory...
        assert run(["local"], path=":/usr/bin") == (126, "")  # ...unless PATH has it (0644)
        assert run(["./local"]) == (126, "")  # a slash: a path, not looked up
        assert run([f"{commands}/executable/both"]) == (0, "executable both\n")


def test_the_workloads_python3_is_its_own_first_on_path() -> None:
    with Sandbox(prefork=False) as box:
        done = box.run(
            ["sh", "-c", "command -v python3; command -v python; python -c 'import ssl'"]
        )
    assert done.ok, done.stderr
    assert done.stdout == "/.stockade/bin/python3\n/.stockade/bin/python\n"


@pytest.mark.parametrize("entry", ["", ".", "bin"])
def test_a_relative_path_entry_is_never_searched_for_a_named_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    # What is found is run on the host, as the caller: never from the working directory.
    planted = tmp_path / (entry if entry not in ("", ".") else "") / "python3-planted"
    planted.parent.mkdir(exist_ok=True)
    proof = tmp_path / "ran"
    planted.write_text(f"#!/bin/sh\ntouch {proof}\n")
    planted.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{entry}:/usr/bin:/bin")
    with pytest.raises(PolicyError, match="not a command on this machine's PATH"):
        Sandbox(_policy(interpreter="python3-planted"))
    assert not proof.exists()

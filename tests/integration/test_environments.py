"""Python packages inside: the caller's venv (`--python-packages`) and environments built for
the sandbox (`sandbox env`, `[python] environment` / `requirements`), shown read-only.

Most tests build a tiny pure-Python package (`appdirs`, one module) into a cache of their own,
so each starts from an empty cache and may break it; the pip download is cached by pip.
"""

from __future__ import annotations

import contextlib
import os
import pty
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stockade import BuildError, Policy, PolicyError, Sandbox, Status
from stockade.environments import store
from stockade.environments.shown import caller_site_packages

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")

TINY = "appdirs"  # one module, no dependencies
MISSING = "this-package-does-not-exist-stockade==1"
IMPORT_TINY = "import appdirs; print(appdirs.__file__)"
SHOWN_TINY = "/.stockade/packages/0/appdirs.py\n"
# Installed in the test venv with Stockade; some machines have one in the base installation too.
VENV_ONLY = ("pytest_timeout", "pyseccomp", "pyroute2", "psutil")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache of this test's own (environments, policies, seccomp programs)."""
    monkeypatch.setenv("STOCKADE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "environments"


def sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stockade", *args], capture_output=True, text=True, timeout=300
    )


def with_python(**section: object) -> Policy:
    return Policy.from_dict({"python": section, "limits": {"timeout": 20}})


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name != "names") if cache.exists() else []


def test_python_packages_shows_the_callers_venv_only_when_asked() -> None:
    if not caller_site_packages():
        pytest.skip("not running in a virtualenv: there are no packages of the caller's own")
    find = "import importlib.util as u, sys; print(*(n for n in sys.argv[1:] if u.find_spec(n)))"
    found = sandbox("run", "--", "python3", "-c", find, *VENV_ONLY).stdout.split()
    name = next((n for n in VENV_ONLY if n not in found), None)
    if name is None:
        pytest.skip(f"{VENV_ONLY} are all installed in the interpreter's own installation")
    probe = f"import {name}; print({name}.__file__)"
    without = sandbox("run", "--", "python3", "-c", probe)
    assert without.returncode == 1 and f"No module named {name!r}" in without.stderr
    shown = sandbox("run", "--python-packages", "--", "python3", "-c", probe)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"/.stockade/packages/0/{name}")


def test_env_create_list_rm_through_the_command_line(cache: Path) -> None:
    made = sandbox("env", "create", "tiny", TINY)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("tiny: appdirs==")
    assert "Successfully installed appdirs" in made.stderr  # pip's own lines, as they come
    listed = sandbox("env", "list")
    assert listed.stdout.split()[:3] == ["tiny", entries(cache)[0][:12], "appdirs"]
    ran = sandbox("run", "--environment", "tiny", "--", "python3", "-c", IMPORT_TINY)
    assert (ran.returncode, ran.stdout) == (0, SHOWN_TINY), ran.stderr
    assert sandbox("env", "rm", "tiny").returncode == 0
    assert sandbox("env", "list").stdout == "" and entries(cache) == []
    gone = sandbox("env", "rm", "tiny")
    assert gone.returncode == 125 and "no environment named 'tiny'" in gone.stderr


def test_requirements_may_come_from_a_file_and_the_command_line(
    cache: Path, tmp_path: Path
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{TINY}\n")
    made = sandbox("env", "create", "tiny", "-r", str(requirements), "--no-such-option")
    assert made.returncode == 125 and made.stderr.startswith("usage: sandbox env create ")
    made = sandbox("env", "create", "tiny", "-r", str(requirements), "AppDirs")  # PKG after -r
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("tiny: appdirs==")


def test_a_requirements_file_with_pip_options_is_refused(cache: Path, tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# tools\nappdirs  # small\n--index-url https://example.org\n")
    done = sandbox("env", "create", "tiny", "-r", str(requirements))
    assert done.returncode == 125 and "requirements.txt:3" in done.stderr
    assert entries(cache) == []


def test_a_named_environment_in_a_policy(cache: Path) -> None:
    assert sandbox("env", "create", "tiny", TINY).returncode == 0
    with Sandbox(with_python(environment="tiny")) as box:
        result = box.run_code(IMPORT_TINY)
    assert (result.status, result.stdout) == (Status.OK, SHOWN_TINY)


def test_an_unknown_environment_is_refused_before_anything_runs(cache: Path) -> None:
    with pytest.raises(PolicyError) as refused:
        Sandbox(with_python(environment="nope"))
    assert refused.value.field == "python.environment"
    assert "sandbox env create nope" in refused.value.reason
    done = sandbox("run", "--environment", "nope", "--", "true")
    assert done.returncode == 125 and "python.environment: no environment named" in done.stderr


def test_requirements_in_a_policy_are_built_on_first_use_then_reused(cache: Path) -> None:
    policy = with_python(requirements=[TINY])
    assert entries(cache) == []
    with Sandbox(policy) as box:
        assert box.run_code(IMPORT_TINY).stdout == SHOWN_TINY
    (built,) = entries(cache)
    inode = (cache / built).stat().st_ino
    with Sandbox(with_python(requirements=["AppDirs "])) as box:  # the same set, spelt otherwise
        assert box.run_code(IMPORT_TINY).status is Status.OK
    assert entries(cache) == [built] and (cache / built).stat().st_ino == inode


def _drain(fd: int, into: bytearray) -> None:
    with contextlib.suppress(OSError):  # EIO once no one holds the terminal any more
        while chunk := os.read(fd, 4096):
            into += chunk


def test_a_first_use_build_says_what_it_does_on_a_terminal(cache: Path, tmp_path: Path) -> None:
    """A first use may build for minutes: on a terminal, where a person looks, it says so
    (`stockade: ...` lines, pip's among them); piped, the caller's stderr stays the run's."""
    policy = tmp_path / "tiny.toml"
    policy.write_text(f'[python]\nrequirements = ["{TINY}"]\n')
    run = ("run", "--policy", str(policy), "--", "python3", "-c", IMPORT_TINY)
    ours, theirs = pty.openpty()
    seen = bytearray()
    reader = threading.Thread(target=_drain, args=(ours, seen))
    reader.start()
    try:
        on_terminal = subprocess.run(
            [sys.executable, "-m", "stockade", *run], stdout=subprocess.PIPE, stderr=theirs,
            text=True, timeout=300,
        )  # fmt: skip
    finally:
        os.close(theirs)
        reader.join(timeout=60)
        os.close(ours)
    assert (on_terminal.returncode, on_terminal.stdout) == (0, SHOWN_TINY)
    lines = bytes(seen).decode().splitlines()
    assert lines[0] == f"stockade: building an environment of {TINY}"
    assert any(line.startswith("stockade: Successfully installed appdirs") for line in lines)
    assert lines[-1].startswith("stockade: built in ")
    shutil.rmtree(cache)
    piped = sandbox(*run)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, SHOWN_TINY, "")
    assert len(entries(cache)) == 1  # built again, quietly


def test_a_requirement_that_does_not_resolve_names_it_and_leaves_nothing(cache: Path) -> None:
    with pytest.raises(BuildError) as failed:
        Sandbox(with_python(requirements=[TINY, MISSING]))
    assert failed.value.requirements == (MISSING,)
    assert "No matching distribution found for " + MISSING in failed.value.output
    assert MISSING in str(failed.value)
    assert entries(cache) == []  # no entry, and no build directory either
    done = sandbox("env", "create", "broken", MISSING)
    assert done.returncode == 125 and f"could not install {MISSING!r}" in done.stderr
    assert entries(cache) == [] and sandbox("env", "list").stdout == ""


BACKEND = """
def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("this package does not build")
"""


def test_a_requirement_that_fails_to_build_names_it_and_leaves_nothing(
    cache: Path, tmp_path: Path
) -> None:
    project = tmp_path / "broken"  # its own build backend, which fails: nothing to download
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (project / "backend.py").write_text(BACKEND)
    broken = f"broken @ {project.as_uri()}"
    with pytest.raises(BuildError) as failed:
        Sandbox(with_python(requirements=[TINY, broken]))
    assert "this package does not build" in failed.value.output
    assert broken in str(failed.value)
    assert entries(cache) == []  # no entry, and no build directory either


WRITES = """
import errno, os, sys
for path in sys.argv[1:]:
    for attempt in (lambda: open(path + "/planted.py", "w"),
                    lambda: open(path + "/appdirs.py", "a"),
                    lambda: os.chmod(path, 0o777), lambda: os.mkdir(path + "/sub")):
        try:
            attempt()
            print("written", path)
        except OSError as exc:
            print(errno.errorcode[exc.errno])
"""


def test_an_environment_cannot_be_changed_from_inside(cache: Path) -> None:
    with Sandbox(with_python(requirements=[TINY])) as box:
        result = box.run(["python3", "-c", WRITES, "/.stockade/packages/0"])
    assert result.stdout.split() == ["EROFS"] * 4, result
    site = cache / entries(cache)[0] / "site"
    assert "planted.py" not in os.listdir(site) and not (site / "sub").exists()


def test_an_entry_others_could_write_is_not_trusted(cache: Path) -> None:
    policy = with_python(requirements=[TINY])
    Sandbox(policy, prefork=False)
    (built,) = entries(cache)
    os.chmod(cache / built, 0o777)  # anyone could now put code there
    assert store.by_key(built) is None
    with Sandbox(policy) as box:  # built again, in place of the untrusted one
        assert box.run_code(IMPORT_TINY).status is Status.OK
    assert entries(cache) == [built] and (cache / built).stat().st_mode & 0o777 == 0o755
    assert sandbox("env", "create", "tiny", TINY).returncode == 0
    os.chmod(cache / built / "environment.json", 0o666)
    with pytest.raises(PolicyError, match="not to be trusted") as refused:
        Sandbox(with_python(environment="tiny"))
    assert refused.value.field == "python.environment"


def test_pools_and_sessions_preload_from_the_environment(cache: Path) -> None:
    with Sandbox(with_python(requirements=[TINY]), pool=1, preload=["appdirs"]) as box:
        result = box.run_code("import sys; print('appdirs' in sys.modules)")
        assert (result.status, result.stdout) == (Status.OK, "True\n")
        with box.session(preload=["appdirs"]) as session:
            assert session.run("import sys; 'appdirs' in sys.modules").stdout == "True\n"
    with Sandbox(Policy.load("default"), pool=1, preload=["appdirs"]) as box:  # not shown
        result = box.run_code("print(1)")
    assert result.status is Status.SETUP_FAILED and "No module named 'appdirs'" in result.error


def test_an_environment_needs_the_interpreter_shown(cache: Path) -> None:
    policy = Policy.from_dict({"python": {"requirements": [TINY]}, "filesystem": {"python": False}})
    with pytest.raises(PolicyError) as refused:
        Sandbox(policy)
    assert refused.value.field == "python"
    assert entries(cache) == []  # no build was attempted


def test_a_run_with_an_environment_stays_lean(cache: Path) -> None:
    """A run that shows a built environment looks it up; it never imports the builder (pip,
    temporary directories, threads) nor the modules a plain run does without."""
    assert sandbox("env", "create", "tiny", TINY).returncode == 0
    heavy = ("stockade.environments.build", "tempfile", "threading", "subprocess", "pydantic")
    probe = (
        "import sys; from stockade.cli import main; code = main(sys.argv[1:]); "
        f"print(sorted(name for name in {heavy!r} if name in sys.modules), code)"
    )
    argv = [sys.executable, "-c", probe, "run", "--environment", "tiny", "--", "true"]
    runs = [subprocess.run(argv, capture_output=True, text=True, timeout=60) for _ in range(2)]
    assert runs[-1].stdout == "[] 0\n", runs

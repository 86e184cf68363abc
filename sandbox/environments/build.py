"""Building environments (outside any sandbox, with pip), naming and removing them.

A build runs `python -m pip install --target DIR` with pip next to Stockade, for the
interpreter the sandbox runs (pip's `--python` when that is another one), into a fresh
directory beside the entries (`environments/.build-*`). Once pip is done, every file is made
unwritable by group and others, what pip installed is written down in environment.json, and
the directory is renamed to its key: readers see a whole environment or none. Whatever goes
wrong, the build's directory is removed, so a failed build leaves nothing in the cache.

Installing from the registry runs the code of packages that have no wheel (their build
scripts), as any `pip install` does, with the caller's rights: requirements come from the
policy's author or the command line, never from a workload.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata

from stockade import disk_cache
from stockade.environments import store
from stockade.environments.store import Environment, Interpreter
from stockade.errors import BuildError, PolicyError, UnsupportedError

Progress = Callable[[str], None]
_STALE = 86_400.0  # seconds after which a build's directory is an abandoned one
_MOST_SAID = 4000  # characters of the installer's message kept in a BuildError


def ensure(
    requirements: Sequence[str], interpreter: Interpreter, progress: Progress | None = None
) -> Environment:
    """The environment of these requirements for `interpreter`: from the cache, else built."""
    wanted = store.requirement_set(requirements)
    key = store.key_for(wanted, interpreter)
    found = store.by_key(key)
    return found if found is not None else _build(key, wanted, interpreter, progress)


def create(
    name: str,
    requirements: Sequence[str],
    interpreter: Interpreter,
    progress: Progress | None = None,
) -> Environment:
    """Build (or find) the environment and point `name` at it, replacing what it named."""
    if not store.NAME.match(name):
        raise PolicyError("NAME", f"{name!r}: letters, digits, '.', '_' and '-', up to 64")
    if not requirements:
        raise PolicyError("requirements", "name at least one package or a requirements file")
    environment = ensure(requirements, interpreter, progress)
    directory = os.path.join(store.root(), store.NAMES)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = os.path.join(directory, f".new-{os.getpid()}-{name}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    os.symlink(os.path.join("..", environment.key), temporary)
    os.replace(temporary, os.path.join(directory, name))  # atomically, over the old link
    return environment


def remove(name: str) -> None:
    """Forget `name`, and remove its environment unless another name still points at it."""
    names = store.names()
    if name not in names:
        raise PolicyError("NAME", f"no environment named {name!r}")
    os.unlink(os.path.join(store.root(), store.NAMES, name))
    key = names.pop(name)
    if key not in names.values():
        _discard(os.path.join(store.root(), key))


def _build(
    key: str, requirements: tuple[str, ...], interpreter: Interpreter, progress: Progress | None
) -> Environment:
    directory = store.root()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if not disk_cache.trusted_path(directory):
        raise UnsupportedError(
            f"a trusted cache directory for environments ({directory} is writable by others)",
            hint=f"use a directory of your own: ${disk_cache.CACHE_ENV}",
        )
    _remove_abandoned(directory)
    building = tempfile.mkdtemp(prefix=store.BUILDING, dir=directory)
    try:
        started = time.monotonic()
        if progress is not None:
            progress(f"building an environment of {', '.join(requirements)}")
        installer = _install(
            os.path.join(building, store.SITE), requirements, interpreter, progress
        )
        info = {
            "requirements": list(requirements),
            "interpreter": interpreter.executable,
            "version": list(interpreter.version),
            "platform": store.platform_tag(),
            "installer": installer,
            "installed": _installed(os.path.join(building, store.SITE)),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        with open(os.path.join(building, store.INFO), "x") as file:
            json.dump(info, file, indent=1)
        _seal(building)
        _move_into_place(building, key)
        building = ""
    finally:
        if building:
            _discard(building)
    found = store.by_key(key)
    if found is None:  # sealed and renamed just now: only a change under our feet gets here
        raise UnsupportedError(f"the environment built at {directory}/{key} cannot be trusted")
    if progress is not None:
        progress(f"built in {found.info.get('build_seconds', '?')} s: {found.site}")
    return found


def _installer(interpreter: Interpreter) -> list[str]:
    """pip next to Stockade, aimed at the sandbox's interpreter."""
    with contextlib.suppress(ImportError):
        import pip  # noqa: F401  (only whether it is there)

        argv = [sys.executable, "-m", "pip"]
        if os.path.realpath(sys.executable) != interpreter.executable:
            argv += ["--python", interpreter.executable]
        return argv
    raise UnsupportedError(
        "pip, to build environments", hint=f"{sys.executable} -m ensurepip --upgrade"
    )


def _install(
    target: str,
    requirements: tuple[str, ...],
    interpreter: Interpreter,
    progress: Progress | None,
) -> str:
    """pip install --target, its output passed on line by line; returns pip's version."""
    argv = [
        *_installer(interpreter),
        "install", "--target", target, "--no-input", "--disable-pip-version-check",
        "--no-warn-script-location", "--progress-bar", "off", "--", *requirements,
    ]  # fmt: skip
    said: list[str] = []
    with subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            said.append(line.rstrip("\n"))
            if progress is not None:
                progress(said[-1])
    if pip.returncode != 0:
        raise BuildError(_failed(requirements, said), _message(said))
    return f"pip {metadata.version('pip')}"


def _failed(requirements: tuple[str, ...], said: list[str]) -> tuple[str, ...]:
    """The requirements pip's errors name (all of them when it names none)."""
    errors = _canonical(" ".join(line for line in said if line.startswith("ERROR")))
    named = tuple(r for r in requirements if _canonical(r.split()[0]).split("[")[0] in errors)
    return named or requirements


def _canonical(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text.lower())


def _message(said: list[str]) -> str:
    """What pip said about the failure: from its first error line, or its last lines."""
    first = next((i for i, line in enumerate(said) if line.startswith("ERROR")), None)
    kept = "\n".join(said[first:] if first is not None else said[-15:])
    return kept[-_MOST_SAID:]


def _installed(site: str) -> list[str]:
    """NAME==VERSION of each distribution pip put there, from its .dist-info directory."""
    found = []
    for entry in sorted(os.listdir(site)):
        if entry.endswith(".dist-info"):
            name, _, version = entry.removesuffix(".dist-info").partition("-")
            found.append(f"{name}=={version}")
    return found


def _seal(directory: str) -> None:
    """No write bits for group or others anywhere below, and nothing that is not ours."""
    me = os.geteuid()
    for path in _walk(directory):
        info = os.lstat(path)
        if info.st_uid != me:
            raise UnsupportedError(f"{path}, made by the build, is not owned by uid {me}")
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o022:
            os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o022)
    os.chmod(directory, 0o755)  # mkdtemp made it 0700; what is shown inside is read below it


def _walk(directory: str) -> list[str]:
    paths = [directory]
    for parent, dirs, files in os.walk(directory):
        paths += [os.path.join(parent, name) for name in (*dirs, *files)]
    return paths


def _move_into_place(building: str, key: str) -> None:
    """Rename the whole build to its key. An entry already there that is not to be trusted
    is moved aside first; one that is (a build that finished first) is kept, and ours goes."""
    final = os.path.join(os.path.dirname(building), key)
    if os.path.lexists(final) and store.by_key(key) is None:
        aside = tempfile.mkdtemp(prefix=store.BUILDING, dir=os.path.dirname(final))
        os.rename(final, os.path.join(aside, "untrusted"))
        _discard(aside)
    try:
        os.rename(building, final)
    except OSError:
        if store.by_key(key) is None:
            raise
        _discard(building)  # the same key, built by another process meanwhile


def _discard(path: str) -> None:
    # What cannot be removed (a tree another user planted) stays, under a name never used.
    shutil.rmtree(path, ignore_errors=True)


def _remove_abandoned(directory: str) -> None:
    """Builds killed before they could clean up (SIGKILL, a power cut) leave their directory."""
    now = time.time()
    for entry in os.scandir(directory):
        if entry.name.startswith(store.BUILDING) and entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime > _STALE:
                    _discard(entry.path)

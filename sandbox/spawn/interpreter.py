"""The workload's Python: which binary `python3` is inside, and the installation it needs.

The policy names one (`[python] interpreter`: an absolute path, or a command found on the
host's PATH) or leaves it to the interpreter running Stockade. Either is resolved to its real
binary, through venvs (whose python links to, or names, the base installation's) and version
managers' shims (which exec the real one): a sandbox shows installations, not environments.
The installation (`sys.base_prefix`, where the standard library lives) is shown read-only at
its own path, and the run's own `python`, `python3` and `python3.X` link to the binary, first
on the workload's PATH. Any other `python3` there (Debian's /usr/bin/python3) would start with
the installation's standard library on its path and fail on extension modules built for
another build (`import ssl`: undefined symbol).

Another interpreter is asked once, in a process of its own, with the host's environment (a
shim needs it); its answer is kept per path and modification time. The running one is read
from `sys`, for nothing. What cannot be used is a `PolicyError` naming `python.interpreter`,
raised before anything runs.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import json
import os
import select
import signal
import sys
import time
from typing import NamedTuple

from stockade.errors import PolicyError
from stockade.kernel.mounts import OWN_PATHS

FIELD = "python.interpreter"
ASK_TIMEOUT = 10.0  # seconds an interpreter may take to say what it is (a cold shim is slow)
_MOST_SAID = 1 << 16
# Isolated (-I: no PYTHON* variables, no user site) and without site (-S): what the binary is,
# not what an environment adds. Prints one JSON line: the values `_describe` takes.
_QUESTION = (
    "import json, os, sys; print(json.dumps(["
    "os.path.realpath(getattr(sys, '_base_executable', '') or sys.executable), "
    "sys.base_prefix, sys.base_exec_prefix, sys.version_info[:2]]))"
)


class Interpreter(NamedTuple):
    executable: str  # the real binary, links resolved
    installation: tuple[str, ...]  # its base prefix and exec prefix, links resolved
    version: tuple[int, int]

    def commands(self) -> tuple[tuple[str, str], ...]:
        """The names the workload runs it by, each with the binary it links to."""
        names = ("python", "python3", "python{}.{}".format(*self.version))
        return tuple((name, self.executable) for name in names)


_asked: dict[tuple[str, int, int], Interpreter] = {}


def find(shown: bool, named: str | None) -> Interpreter | None:
    """The interpreter a policy gives its runs: None when it shows none (`filesystem.python =
    false`), the running one when it names none."""
    if not shown:
        if named is not None:
            raise PolicyError(FIELD, "names an interpreter, but filesystem.python = false")
        return None
    if named is None:
        if not sys.executable:
            raise PolicyError(FIELD, "the running Python's binary is unknown: name one")
        executable = getattr(sys, "_base_executable", "") or sys.executable
        return _describe(executable, sys.base_prefix, sys.base_exec_prefix, sys.version_info[:2])
    path = named if "/" in named else _on_host_path(named)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise PolicyError(FIELD, f"{path}: {exc.strerror}") from None
    key = (path, info.st_ino, info.st_mtime_ns)
    if key not in _asked:
        _asked[key] = _ask(path)
    return _asked[key]


def _on_host_path(name: str) -> str:
    # Only absolute entries: an empty one, "." or a relative one is the working directory, and
    # what is found is run here, outside any sandbox. A policy means an installed Python.
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = f"{directory}/{name}"
        if (
            directory.startswith("/")
            and os.path.isfile(candidate)
            and os.access(candidate, os.X_OK)
        ):
            return candidate
    raise PolicyError(FIELD, f"{name!r} is not a command on this machine's PATH")


def _ask(path: str) -> Interpreter:
    """Run `path` once and make an `Interpreter` of what it says about itself."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise PolicyError(FIELD, f"{path} is not an executable file")
    said, status = _output_of([path, "-I", "-S", "-c", _QUESTION])
    try:
        executable, prefix, exec_prefix, version = json.loads(said.splitlines()[-1])
        return _describe(executable, prefix, exec_prefix, tuple(version))
    except (ValueError, IndexError, TypeError):  # not the one JSON line Python 3 prints
        shown = said.decode(errors="replace").strip()[-300:] or "nothing"
        what = "is not a Python 3 interpreter" if status == 0 else "did not run as Python 3"
        raise PolicyError(FIELD, f"{path} {what} (exit status {status}; it said {shown})") from None


def _output_of(argv: list[str]) -> tuple[bytes, int]:
    """Its stdout and stderr, and its exit status. Not `subprocess`: it imports `threading`
    and more, which a `sandbox` command does not otherwise pay for."""
    read, write = os.pipe()
    try:
        pid = os.posix_spawn(
            argv[0], argv, os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write, 1),
                (os.POSIX_SPAWN_DUP2, write, 2),
            ],
        )  # fmt: skip
    except OSError as exc:
        os.close(read)
        raise PolicyError(FIELD, f"cannot run {argv[0]}: {exc.strerror}") from None
    finally:
        os.close(write)
    chunks, size, deadline = [], 0, time.monotonic() + ASK_TIMEOUT
    with open(read, "rb", buffering=0) as pipe:
        while select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))[0]:
            chunk = pipe.read(_MOST_SAID)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > _MOST_SAID:
                break
        else:  # the deadline passed
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise PolicyError(FIELD, f"{argv[0]} did not answer within {ASK_TIMEOUT:g} s")
    if size > _MOST_SAID:  # what a Python says here is one short line
        os.kill(pid, signal.SIGKILL)
    return b"".join(chunks), os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _describe(
    executable: str, prefix: str, exec_prefix: str, version: tuple[int, ...]
) -> Interpreter:
    binary = os.path.realpath(executable)
    installation = tuple(dict.fromkeys(os.path.realpath(p) for p in (prefix, exec_prefix)))
    if version[0] != 3:
        raise PolicyError(FIELD, f"{binary} is Python {version[0]}; runs need Python 3")
    if not any(binary.startswith(p.rstrip("/") + "/") for p in installation):
        raise PolicyError(
            FIELD, f"{binary} lies outside its installation {installation[0]}: name that one's"
        )
    for path in installation:
        for own in OWN_PATHS:  # a run's own directory would hide it
            if path == own or path.startswith(own + "/") or own.startswith(path.rstrip("/") + "/"):
                raise PolicyError(
                    FIELD, f"its installation {path} overlaps {own}, which each run makes itself"
                )
    return Interpreter(binary, installation, (version[0], version[1]))

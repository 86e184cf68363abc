"""`sandbox env create | list | rm`: the environments of the cache, by name.

Exit codes are the command's (cli.py): 0 done; 125 bad usage (an unknown name, a bad
requirement) or an environment that could not be built (the installer's message is printed);
130 interrupted, with the build's directory removed on the way out.
"""

from __future__ import annotations

import argparse
import os
import sys

from stockade.environments import build, store
from stockade.environments.store import Interpreter
from stockade.errors import PolicyError, SandboxError


def main(args: argparse.Namespace) -> int:
    """One action; errors are the command's to report (SandboxError and its kinds)."""
    try:
        if args.action == "create":
            return _create(args.name, args.packages, args.requirement)
        if args.action == "list":
            return _list()
        for name in args.names:
            build.remove(name)
        return 0
    except OSError as exc:  # the cache directory itself: as any failure of the command's
        raise SandboxError(f"the environment cache: {exc}") from exc


def _create(name: str, packages: list[str], files: list[str]) -> int:
    requirements = list(packages)
    for path in files:
        requirements += read_requirements(path)
    for requirement in requirements:
        try:
            store.normalise(requirement)
        except ValueError as exc:
            raise PolicyError("PKG", str(exc)) from None
    # The default interpreter of runs (spawn/interpreter.py): the running one's real binary.
    running = getattr(sys, "_base_executable", "") or sys.executable
    interpreter = Interpreter(os.path.realpath(running), sys.version_info[:2])
    environment = build.create(name, requirements, interpreter, progress=_say)
    print(f"{name}: {', '.join(environment.info['installed'])}")
    return 0


def read_requirements(path: str) -> list[str]:
    """The requirements of a requirements file: one a line, `#` comments. pip's options
    (`-r`, `--index-url`, `-e`, ...) are refused: they would not be part of the key."""
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise PolicyError("-r", f"cannot read {path!r}: {exc.strerror}") from None
    found = []
    for number, line in enumerate(lines, start=1):
        text = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
        if text.startswith("-"):
            raise PolicyError(
                "-r", f"{path}:{number}: {text!r}: pip options are not supported, list packages"
            )
        if text:
            found.append(text)
    return found


def _list() -> int:
    names: dict[str, list[str]] = {}
    for name, key in store.names().items():
        names.setdefault(key, []).append(name)
    for environment in store.entries():
        called = ", ".join(names.get(environment.key, [])) or "(from a policy)"
        info = environment.info
        print(f"{called:<20} {environment.key[:12]}  {' '.join(info['requirements'])}")
        print(f"{'':<20} {'':<12}  python {'.'.join(map(str, info['version']))}, ", end="")
        print(f"{len(info['installed'])} distributions, built {info['created']}")
    return 0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

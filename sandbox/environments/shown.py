"""Which package directories a policy's `[python]` section shows inside, in sys.path order.

- `environment = "NAME"`: the environment `sandbox env create NAME` built (store.py);
- `requirements = [...]`: the environment of those requirements, built on first use;
- `site_packages = true`: the caller's own environment, the site-packages directories of the
  running interpreter that its base installation does not hold. In a virtualenv that is the
  venv's site-packages; the base installation's (and the user's ~/.local) are not added: the
  base installation is the sandbox's interpreter's own, shown with it when it is the same
  one, and the user site is not part of an environment. Outside a virtualenv it adds nothing.

A named environment or requirements come first, so they win over the caller's packages.
"""

from __future__ import annotations

import os
import site
import sys

from stockade.environments import store
from stockade.environments.store import Interpreter
from stockade.errors import PolicyError


def package_dirs(
    *,
    environment: str | None,
    requirements: tuple[str, ...],
    site_packages: bool,
    interpreter: Interpreter,
) -> tuple[str, ...]:
    """The host directories to show read-only, first on the workload's sys.path (the policy
    gives an environment or requirements, not both). Raises a PolicyError (an unknown name)
    or a BuildError (requirements that cannot be installed) before anything runs."""
    dirs = []
    if environment is not None:
        dirs.append(store.by_name(environment, interpreter).site)
    elif requirements:
        dirs.append(_built(requirements, interpreter).site)
    if site_packages:
        if interpreter.version != sys.version_info[:2]:
            raise PolicyError(
                "python.site_packages",
                "the caller's packages are for Python {}.{}, and runs use {} ({}.{}): build "
                "an environment for it instead".format(
                    *sys.version_info[:2], interpreter.executable, *interpreter.version
                ),
            )
        dirs += caller_site_packages()
    return tuple(dict.fromkeys(os.path.realpath(d) for d in dirs))


def _built(requirements: tuple[str, ...], interpreter: Interpreter) -> store.Environment:
    wanted = store.requirement_set(requirements)
    found = store.by_key(store.key_for(wanted, interpreter))
    if found is not None:
        return found
    from stockade.environments import build  # pip and temporary directories: only to build

    progress = _to_terminal if sys.stderr is not None and sys.stderr.isatty() else None
    return build.ensure(wanted, interpreter, progress)


def caller_site_packages() -> list[str]:
    """The running interpreter's site-packages directories outside its base installation."""
    base = tuple(os.path.realpath(p) + "/" for p in (sys.base_prefix, sys.base_exec_prefix))
    found = []
    for directory in site.getsitepackages():
        real = os.path.realpath(directory)
        if os.path.isdir(real) and not (real + "/").startswith(base):
            found.append(real)
    return found


def _to_terminal(line: str) -> None:
    # A first use can take minutes (numpy, pandas): say what is happening where a person looks.
    print(f"stockade: {line}", file=sys.stderr, flush=True)

"""Where a policy's TOML comes from: a built-in name or a file. Reads text, validates nothing.

Kept apart from policy.model, which imports pydantic, so that the command line can read (and hash)
a policy's text without paying for pydantic (see policy.view). The built-in profiles are
found with `find_spec` rather than `importlib.resources`, whose import alone costs a command
about 20 ms; the `stockade.policies` package is installed as plain files, never zipped.
"""

from __future__ import annotations

import os
import re
from importlib.util import find_spec

from stockade.errors import PolicyError

_BUILTIN_NAME = re.compile(r"[a-z0-9_-]+")
_MOST = 1 << 20  # characters of a policy file: a real one is a few hundred


def read_policy_text(name_or_path: str) -> tuple[str, str]:
    """(the TOML text, where it came from for messages) of a built-in name or a file path."""
    if "/" in name_or_path or name_or_path.endswith(".toml"):
        try:
            with open(name_or_path, encoding="utf-8") as file:
                text = file.read(_MOST + 1)  # bounded: a device such as /dev/zero never ends
        except IsADirectoryError:
            raise PolicyError("policy", _a_directory(name_or_path)) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL byte
            raise PolicyError("policy", f"cannot read {name_or_path!r}: {exc}") from None
        if len(text) > _MOST:
            raise PolicyError("policy", f"{name_or_path!r} is longer than {_MOST} characters")
        return text, name_or_path
    path = os.path.join(_builtin_dir(), f"{name_or_path}.toml")
    if not _BUILTIN_NAME.fullmatch(name_or_path) or not os.path.isfile(path):
        if os.path.isdir(name_or_path):
            raise PolicyError("policy", _a_directory(name_or_path))
        known = ", ".join(builtin_policies())
        raise PolicyError("policy", f"unknown policy {name_or_path!r}; built-in: {known}")
    with open(path, encoding="utf-8") as file:
        return file.read(), f"policy {name_or_path!r}"


def _a_directory(path: str) -> str:
    known = ", ".join(builtin_policies())
    return f"{path!r} is a directory: give a policy's TOML file, or a built-in name ({known})"


def builtin_policies() -> dict[str, str]:
    """Built-in policy names and their descriptions."""
    import tomllib  # ~15 ms: only to list the profiles, never on the way to a run

    found = {}
    directory = _builtin_dir()
    for filename in sorted(os.listdir(directory)):
        if filename.endswith(".toml"):
            with open(os.path.join(directory, filename), "rb") as file:
                data = tomllib.load(file)
            found[filename.removesuffix(".toml")] = data.get("description", "")
    return found


def _builtin_dir() -> str:
    spec = find_spec("stockade.policies")
    if spec is None or not spec.submodule_search_locations:
        raise PolicyError("policy", "the built-in policies (stockade.policies) are not installed")
    return next(iter(spec.submodule_search_locations))

"""The command line's cache of validated policies, so that a run needs no pydantic.

Validating a policy costs a `sandbox` command 150-200 ms (importing pydantic, building the
models), several times the rest of its start-up, and a code-generation loop runs the same
policy with the same flags thousands of times. So the CLI keeps what validation produced: on a
miss it validates with pydantic as always and stores `model_dump(mode="json")`; on a hit it
serves a `PolicyView` of that dump instead of a `Policy`. Invalid input is never stored, so its
errors are pydantic's, exactly as without a cache.

The key is a SHA-256 of everything the validated values depend on: the TOML text, the flags
that override it, the source of the modules that validate (policy.model, net.allowlist for
allowlist entries, and this module, which builds the view), pydantic's version.py (read, not
imported; it pins pydantic-core), the Python version (tomllib) and the package version. Where
entries live and when one is trusted is disk_cache's business: the same rules as the seccomp
programs, since a forged entry could loosen a policy just as a forged filter could.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from importlib.util import find_spec
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from stockade import __version__
from stockade import disk_cache as cache
from stockade.policy.source import read_policy_text

if TYPE_CHECKING:
    from pydantic import BaseModel

    from stockade.policy.model import Policy

_MAGIC = b"stockade-policy-v1\n"
_PREFIX = "policy-"
_KEEP = 64  # entries kept; each is about 1 KB
_MAX_ENTRY = 1 << 20
# The modules whose code decides what validation produces (found by name, never by path: a
# rename fails loudly instead of switching the cache off).
_VALIDATING_MODULES = ("stockade.policy.model", "stockade.net.allowlist", __name__)

Shape = dict[str, "Shape"]  # the nested sections of a model: {"limits": {}, ...}


class PolicyView:
    """A validated policy from the cache: read-only attributes holding the values the model
    had, nested sections as views, lists as tuples, mappings read-only. `Sandbox` takes it in
    place of a `Policy` (it only reads attributes); it has none of the model's methods."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"policy has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a cached policy is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("a cached policy is read-only")

    def __repr__(self) -> str:
        return f"PolicyView({self._values!r})"


def load_policy(name_or_path: str, flags: Mapping[str, Any]) -> Policy | PolicyView:
    """The policy `name_or_path` with `flags` applied (as `Policy.override` takes them): from
    the cache when a trusted entry exists, else validated by pydantic (and stored)."""
    text, origin = read_policy_text(name_or_path)
    key = policy_key(text, flags)
    if key is not None and (view := _read(key)) is not None:
        return view
    from stockade.policy.model import Policy

    policy = Policy.from_toml(text, origin).override(**flags)  # raises for invalid input
    if key is not None:
        _store(key, policy)
    return policy


def policy_key(text: str, flags: Mapping[str, Any]) -> str | None:
    """The entry's key; None (no caching) when pydantic or a source cannot be found, so that
    validation runs and reports the problem as it would without a cache."""
    try:
        spec = find_spec("pydantic")
        if spec is None or spec.origin is None:
            return None
        parts = [text.encode(), json.dumps(flags, sort_keys=True).encode()]
        for path in (
            *(_origin(name) for name in _VALIDATING_MODULES),
            os.path.join(os.path.dirname(spec.origin), "version.py"),
        ):
            with open(path, "rb") as file:
                parts.append(file.read())
    except (OSError, ValueError, TypeError):  # TypeError: a flag JSON cannot hold
        return None
    parts.append(f"{sys.version} stockade {__version__}".encode())
    return cache.digest(_MAGIC, parts)


def _origin(module: str) -> str:
    spec = find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"{module}, whose code the policy cache hashes")
    return spec.origin


def _read(key: str) -> PolicyView | None:
    data = cache.read(f"{_PREFIX}{key}.json", _MAGIC, key, _MAX_ENTRY)
    if data is None:
        return None
    try:
        entry = json.loads(data)
        return _view(entry["policy"], entry["shape"])
    except (ValueError, KeyError, TypeError, AttributeError):  # not what _store writes
        return None


def _store(key: str, policy: Policy) -> None:
    shape, dump = _shape(policy), policy.model_dump(mode="json")
    # Only what comes back equal: a field JSON cannot carry faithfully is never cached.
    # repr, not ==: 1 == 1.0 and (1,) != [1] would hide a type that changed on the way.
    if repr(_thawed(_view(dump, shape))) != repr(policy.model_dump()):
        return
    payload = json.dumps({"shape": shape, "policy": dump}, separators=(",", ":")).encode()
    if len(payload) < _MAX_ENTRY - 1024:  # room for the magic, the key and the checksum
        cache.write(f"{_PREFIX}{key}.json", _MAGIC, key, payload)
        cache.prune(_PREFIX, _KEEP)


def _shape(model: BaseModel) -> Shape:
    from pydantic import BaseModel

    return {
        name: _shape(value)
        for name in type(model).model_fields
        if isinstance(value := getattr(model, name), BaseModel)
    }


def _view(dump: Mapping[str, Any], shape: Shape) -> PolicyView:
    return PolicyView(
        {
            name: _view(value, shape[name]) if name in shape else _frozen(value)
            for name, value in dump.items()
        }
    )


def _frozen(value: Any) -> Any:
    # As the models hold them: tuples for sequences; mappings read-only, as a frozen model's are
    # meant to be.
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return MappingProxyType({name: _frozen(item) for name, item in value.items()})
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, PolicyView):
        return {name: _thawed(item) for name, item in value._values.items()}
    if isinstance(value, tuple):
        return tuple(_thawed(item) for item in value)
    if isinstance(value, MappingProxyType):
        return {name: _thawed(item) for name, item in value.items()}
    return value

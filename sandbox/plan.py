"""The run, planned: plain data computed from the policy before any fork.

The runner builds a `RunPlan`; the supervisor and the child only execute it (bubblewrap's
"data, then interpreter"). Nothing here imports pydantic, so the spawn path stays lean.

The package's records are NamedTuples, not dataclasses: a `sandbox` command pays for every
class its run creates. Measured in instructions (callgrind), a frozen dataclass costs five
times a NamedTuple, and importing `dataclasses` (with `inspect` and `ast`) costs about a
third of a bare Python start. Change a record with `_replace`. The modules on a run's path
that define records do without `from __future__ import annotations`: with it, `typing` turns
each field's annotation into a `ForwardRef` and compiles it, and the first `compile()` of a
process builds all of the AST's types, ~10% of what the command imports. A name such a module
imports only for type checking is quoted where it is used.
"""

# Not `from __future__ import annotations`: it would cost every command (see plan.py).
from typing import NamedTuple

from .cgroups import CgroupLimits
from .limits import Rlimits
from .mounts import RootPlan
from .net import NetworkPlan


class RunPlan(NamedTuple):
    argv: tuple[str, ...]
    env: dict[str, str]
    root: RootPlan
    rlimits: Rlimits
    seccomp: tuple[bytes, ...]
    hostname: str
    timeout: float
    cpu_time: float | None
    cgroup_limits: CgroupLimits
    files: dict[str, bytes]
    cgroups_required: bool = True
    rootless: bool = False  # not root: the supervisor makes a user namespace first
    network: NetworkPlan = NetworkPlan()  # no rules: no network

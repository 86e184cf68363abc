"""The run, planned: plain data computed from the policy before any fork.

The runner builds a `RunPlan`; the supervisor and the child only execute it (bubblewrap's
"data, then interpreter"). Nothing here imports pydantic, so the spawn path stays lean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cgroups import CgroupLimits
from .limits import Rlimits
from .mounts import RootPlan
from .net import NetworkPlan


@dataclass(frozen=True)
class RunPlan:
    argv: tuple[str, ...]
    env: dict[str, str]
    root: RootPlan
    rlimits: Rlimits
    seccomp: tuple[bytes, ...]
    hostname: str
    timeout: float
    cpu_time: float | None
    cgroup_limits: CgroupLimits
    cgroups_required: bool = True
    rootless: bool = False  # not root: the supervisor makes a user namespace first
    files: dict[str, bytes] = field(default_factory=dict)
    network: NetworkPlan = field(default_factory=NetworkPlan)  # no rules: no network

"""Per-process resource limits (rlimits): a table planned from the policy, applied in the child.

They back up the cgroup limits, which hold for the whole tree: RLIMIT_CPU stops a single
spinning process at once, and RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE and RLIMIT_STACK have
no cgroup equivalent.
"""

from __future__ import annotations

import math
import resource

Rlimits = tuple[tuple[int, int, int], ...]  # (resource, soft, hard)


def plan_rlimits(*, cpu_time: float | None, file_size: int, open_files: int, stack: int) -> Rlimits:
    limits = [
        (resource.RLIMIT_FSIZE, file_size, file_size),
        (resource.RLIMIT_NOFILE, open_files, open_files),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_STACK, stack, stack),
    ]
    if cpu_time is not None:
        # SIGXCPU at the soft limit, SIGKILL one second later for a process that ignores it.
        seconds = math.ceil(cpu_time)
        limits.append((resource.RLIMIT_CPU, seconds, seconds + 1))
    return tuple(limits)


def apply_rlimits(limits: Rlimits) -> None:
    for which, soft, hard in limits:
        resource.setrlimit(which, (soft, hard))

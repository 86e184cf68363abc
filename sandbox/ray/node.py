"""The actor `stockade.ray` places on each node: one `Sandbox` with a warm pool, and the
sessions and workspaces that live there.

It is a plain class; `cluster.py` makes it a Ray actor (threaded: `max_concurrency` calls at
once). A Ray worker is a multi-threaded process (Ray's own threads), so every sandbox it
starts is forked by the spawn server, never from the worker itself (spawn/server.py);
`info()` gives its pid to check that. Nothing here imports Ray: the actor only runs jobs.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stockade.batch.jobs import Job, JobResult
from stockade.errors import PolicyError, SessionError
from stockade.runner import Sandbox

if TYPE_CHECKING:
    from stockade.result import Result

KINDS = {"session": "session", "workspace": "workspace"}  # kind -> the Sandbox method
# What a caller may call on an open one: a session's and a workspace's public methods.
CALLS = frozenset(
    {"run", "read_file", "write_file", "list_files", "exec", "list", "remove", "export",
     "import_"}
)  # fmt: skip


class Node:
    """One node's share of a `RaySandbox`: `pool` warm sandboxes under `policy`."""

    def __init__(self, policy: Any, pool: int) -> None:
        self.size = pool
        self.box = Sandbox(policy, pool=pool)
        self._open: dict[int, Any] = {}  # sessions and workspaces, by number
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def ready(self) -> int:
        """Once the actor is up: the size of its pool (the work it takes at once)."""
        return self.size

    def run_jobs(self, jobs: Sequence[Job]) -> list[JobResult]:
        """A chunk of a batch, on the pool, all of its results at once: a chunk that never
        comes back (its node was lost) runs again elsewhere, so none is reported twice."""
        return list(self.box.map(jobs, concurrency=min(self.size, len(jobs)), progress=False))

    def run_code(self, code: str, language: str, options: dict[str, Any]) -> Result:
        return self.box.run_code(code, language, **options)

    def run(self, argv: Sequence[str], options: dict[str, Any]) -> Result:
        return self.box.run(argv, **options)

    def open(self, kind: str, options: dict[str, Any]) -> int:
        """Open a session or a workspace (`Sandbox.session` / `.workspace`) here: its number."""
        opened = getattr(self.box, KINDS[kind])(**options)
        with self._lock:
            number = next(self._numbers)
            self._open[number] = opened
        return number

    def call(self, number: int, method: str, args: Sequence[Any], options: dict[str, Any]) -> Any:
        """A method of an open session or workspace (one of CALLS) with its arguments."""
        with self._lock:
            opened = self._open.get(number)
        if opened is None:
            raise SessionError(f"no session or workspace {number} on this node (closed)")
        if method not in CALLS:
            raise PolicyError("method", f"{method!r} is not one of {', '.join(sorted(CALLS))}")
        return getattr(opened, method)(*args, **options)

    def close_handle(self, number: int) -> None:
        with self._lock:
            opened = self._open.pop(number, None)
        if opened is not None:
            opened.close()

    def info(self) -> dict[str, Any]:
        """This actor's process and its number of threads."""
        return {"pid": os.getpid(), "threads": len(os.listdir("/proc/self/task"))}

    def close(self) -> None:
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for handle in opened:
            handle.close()
        self.box.close()

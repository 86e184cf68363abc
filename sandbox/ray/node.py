"""The actor `stockade.ray` places on each node: one `Sandbox` with a warm pool, and the
sessions that live there.

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
from stockade.errors import SessionError
from stockade.runner import Sandbox

if TYPE_CHECKING:
    from stockade.result import Result
    from stockade.warm.session import Session


class Node:
    """One node's share of a `RaySandbox`: `pool` warm sandboxes under `policy`."""

    def __init__(self, policy: Any, pool: int) -> None:
        self.size = pool
        self.box = Sandbox(policy, pool=pool)
        self._sessions: dict[int, Session] = {}
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

    def open_session(self, options: dict[str, Any]) -> int:
        session = self.box.session(**options)
        with self._lock:
            number = next(self._numbers)
            self._sessions[number] = session
        return number

    def session_run(self, number: int, code: str, options: dict[str, Any]) -> Result:
        with self._lock:
            session = self._sessions.get(number)
        if session is None:
            raise SessionError(f"no session {number} on this node (closed)")
        return session.run(code, **options)

    def close_session(self, number: int) -> None:
        with self._lock:
            session = self._sessions.pop(number, None)
        if session is not None:
            session.close()

    def info(self) -> dict[str, Any]:
        """This actor's process and its number of threads."""
        return {"pid": os.getpid(), "threads": len(os.listdir("/proc/self/task"))}

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()
        self.box.close()

"""`RaySandbox`: a `Sandbox` spread over a Ray cluster, one node actor (node.py) per node.

Each live node gets one actor, pinned there (node affinity, not soft), holding a warm pool of
`pool_per_node` sandboxes (default: the node's CPUs). `run_code` / `run` go to the actors in
turn; `map` sends chunks of jobs, a few per actor at a time, and yields each chunk's results
when the whole chunk is back. A chunk whose actor dies (its node was lost) is sent again to
another actor: it was never reported, so no job is lost and none is reported twice. A
session or a workspace stays on the actor that holds it; its node lost, it is lost
(`SessionError`), as a local one whose sandbox died.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from stockade.batch.engine import Item
from stockade.batch.jobs import Job, JobResult, as_job, id_of, rejected
from stockade.batch.progress import Progress
from stockade.errors import PolicyError, SandboxError, SessionError, UnsupportedError

try:
    import ray
    from ray.exceptions import ObjectLostError, RayActorError, RayTaskError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as exc:
    raise UnsupportedError("ray", f"pip install 'stockade[ray]' ({exc})") from None
from stockade.policy.model import Policy
from stockade.ray.node import Node
from stockade.result import Result

CHUNK = 16  # most jobs sent in one call: Ray's own cost per call is ~1 ms
DEPTH = 2  # chunks in flight per actor: one runs while the next one's results travel
TRIES = 3  # times a chunk is sent before its jobs are reported lost with their nodes
_START = 120.0  # seconds an actor may take to start its pool
LOST = (RayActorError, ObjectLostError)  # the actor, or its node, is gone: run elsewhere


class RaySandbox:
    """Runs jobs on every node of a Ray cluster, as `Sandbox` does on one machine."""

    def __init__(
        self,
        policy: Policy | str | None = None,
        *,
        pool_per_node: int | None = None,
        address: str | None = None,
    ) -> None:
        """`address`: the cluster's (`auto`, `ray://...`); None joins the one this process
        is connected to, or starts a local one, as `ray.init` does."""
        if policy is None or isinstance(policy, str):
            policy = Policy.load(policy or "default")
        if policy.network.allow:
            raise PolicyError("policy", "RaySandbox keeps pools: no network allowlist")
        if pool_per_node is not None and (
            isinstance(pool_per_node, bool) or not isinstance(pool_per_node, int)
            or pool_per_node < 1
        ):  # fmt: skip
            raise PolicyError("pool_per_node", f"expected an integer >= 1, got {pool_per_node!r}")
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        self.policy, self.pool_per_node = policy, pool_per_node
        self._lock = threading.Lock()
        self._actors: dict[str, Any] = {}  # node id -> its actor
        self._turn = itertools.count()
        self._place()

    # ------------------------------------------------------------------ the actors

    def _place(self) -> None:
        """An actor on every live node that has none; wait until each has started."""
        alive = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}
        new = {}
        for node_id, node in alive.items():
            if node_id in self._actors:
                continue
            size = self.pool_per_node or max(1, int(node.get("Resources", {}).get("CPU", 1)))
            actor = (
                ray.remote(Node)
                .options(
                    num_cpus=0,  # the sandboxes' own cgroups limit them, not Ray
                    max_concurrency=DEPTH + 8,  # chunks, and single runs and sessions beside
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                )
                .remote(self.policy, size)
            )
            new[node_id] = (actor, actor.ready.remote())
        why = "the cluster has no live node"
        for node_id, (actor, ready) in new.items():
            try:
                ray.get(ready, timeout=_START)
                self._actors[node_id] = actor
            except LOST as exc:  # the node went meanwhile, or the actor could not start
                why = str(exc)
        if not self._actors:
            raise SandboxError(f"no node of the Ray cluster could take a sandbox actor: {why}")

    def _lost(self, node_id: str) -> None:
        """The actor on `node_id` is gone: forget it; with none left, place new ones."""
        with self._lock:
            self._actors.pop(node_id, None)
            if not self._actors:
                self._place()

    def _next_actor(self) -> tuple[str, Any]:
        with self._lock:
            actors = list(self._actors.items())
        if not actors:
            raise SandboxError("no node of the Ray cluster is left to run on")
        return actors[next(self._turn) % len(actors)]

    def nodes(self) -> dict[str, Any]:
        """Node id -> the actor there (a snapshot)."""
        with self._lock:
            return dict(self._actors)

    # ------------------------------------------------------------------ single runs

    def run_code(self, code: str, language: str = "python", **options: Any) -> Result:
        """`Sandbox.run_code` on one of the nodes (again on another if that node is lost)."""
        return self._call(lambda actor: actor.run_code.remote(code, language, options))

    def run(self, argv: Sequence[str], **options: Any) -> Result:
        """`Sandbox.run` on one of the nodes (again on another if that node is lost)."""
        return self._call(lambda actor: actor.run.remote(list(argv), options))

    async def arun_code(self, code: str, language: str = "python", **options: Any) -> Result:
        """`run_code` for asyncio: the call is awaited, the loop stays free."""
        while True:
            node_id, actor = self._next_actor()
            try:
                return await _unwrapped_async(actor.run_code.remote(code, language, options))
            except LOST:
                self._lost(node_id)

    def _call(self, send: Any) -> Result:
        while True:
            node_id, actor = self._next_actor()
            try:
                return _unwrapped(send(actor))
            except LOST:
                self._lost(node_id)

    # ------------------------------------------------------------------ batches

    def map(
        self, jobs: Iterable[Item], *, concurrency: int | None = None, progress: bool = True
    ) -> Iterator[JobResult]:
        """`Sandbox.map` over the cluster: each job's result once, in completion order.
        `concurrency` bounds the jobs in flight (default: each node's pool, twice over)."""
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise PolicyError("concurrency", f"expected an integer >= 1, got {concurrency!r}")
        bar = Progress(progress, len(jobs) if hasattr(jobs, "__len__") else None)
        try:
            for done in _Batch(self, jobs, concurrency).results():
                bar.done(not done.result.ok)
                yield done
        finally:
            bar.close()

    # ------------------------------------------------------------------ sessions

    def session(self, **options: Any) -> RaySession:
        """A session (`Sandbox.session`) on one node; each call goes to that node's actor."""
        return RaySession(self, *self._open("session", options))

    def workspace(self, **options: Any) -> RayWorkspace:
        """A workspace (`Sandbox.workspace`) on one node; each command and file call goes to
        that node's actor."""
        return RayWorkspace(self, *self._open("workspace", options))

    def _open(self, kind: str, options: dict[str, Any]) -> tuple[str, Any, int]:
        node_id, actor = self._next_actor()
        try:
            return node_id, actor, _unwrapped(actor.open.remote(kind, options))
        except LOST:
            self._lost(node_id)
            raise SessionError(f"the {kind}'s node was lost as it started") from None

    def close(self) -> None:
        """End every actor's pool and sessions, and the actors."""
        with self._lock:
            actors, self._actors = list(self._actors.values()), {}
        for actor in actors:
            with contextlib.suppress(*LOST):
                ray.get(actor.close.remote())
            ray.kill(actor)

    def __enter__(self) -> RaySandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Routed:
    """A session or workspace on the node actor that holds it: every call is routed there.
    Its node lost, it is lost: `SessionError`, as for a local one whose sandbox died."""

    def __init__(self, cluster: RaySandbox, node_id: str, actor: Any, number: int) -> None:
        self._cluster, self.node_id, self.actor, self.number = cluster, node_id, actor, number

    def _call(self, method: str, *args: Any, **options: Any) -> Any:
        try:
            return _unwrapped(self.actor.call.remote(self.number, method, args, options))
        except LOST:
            self._cluster._lost(self.node_id)
            raise SessionError("its node was lost: its state is gone") from None

    def close(self) -> None:
        with contextlib.suppress(*LOST):
            _unwrapped(self.actor.close_handle.remote(self.number))

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RaySession(_Routed):
    """`Session.run` and its file calls, on the node that holds the session."""

    def run(self, code: str, **options: Any) -> Result:
        return self._call("run", code, **options)

    def read_file(self, path: str) -> bytes:
        return self._call("read_file", path)

    def write_file(self, path: str, data: bytes | str) -> None:
        self._call("write_file", path, data)

    def list_files(self, path: str = ".") -> list[str]:
        return self._call("list_files", path)


class RayWorkspace(_Routed):
    """`Workspace.exec` and its file calls, on the node that holds the workspace (`start`
    and `python`, whose handles live in the actor, are not routed)."""

    def exec(self, command: Sequence[str] | str, **options: Any) -> Result:
        return self._call("exec", command, **options)

    def read_file(self, path: str) -> bytes:
        return self._call("read_file", path)

    def write_file(self, path: str, data: bytes | str, **options: Any) -> None:
        self._call("write_file", path, data, **options)

    def list(self, path: str = "/workspace") -> list[Any]:
        return self._call("list", path)

    def remove(self, path: str, **options: Any) -> None:
        self._call("remove", path, **options)

    def export(self, path: str = "/workspace") -> bytes:
        return self._call("export", path)

    def import_(self, tar: bytes, path: str = "/workspace") -> None:
        self._call("import_", tar, path)


class _Batch:
    """One `map`: chunks out to the actors, results back, lost chunks out again."""

    def __init__(self, cluster: RaySandbox, jobs: Iterable[Item], concurrency: int | None):
        self.cluster = cluster
        self.items = enumerate(jobs)
        self.waiting: collections.deque[list[Job]] = collections.deque()  # lost chunks
        self.flying: dict[Any, tuple[str, list[Job]]] = {}  # ref -> (node id, chunk)
        self.refused: collections.deque[JobResult] = collections.deque()
        self.tries: collections.Counter[tuple[object, ...]] = collections.Counter()
        self.size = min(CHUNK, concurrency or CHUNK)
        self.concurrency = concurrency

    def results(self) -> Iterator[JobResult]:
        while True:
            self._send()
            while self.refused:
                yield self.refused.popleft()
            if not self.flying:
                return
            ready, _ = ray.wait(list(self.flying), num_returns=1)
            node_id, chunk = self.flying.pop(ready[0])
            try:
                yield from _unwrapped(ready[0])
            except LOST:
                self.cluster._lost(node_id)
                yield from self._again(chunk)

    def _again(self, chunk: list[Job]) -> Iterator[JobResult]:
        """A chunk lost with its node goes out again, up to TRIES times in all; a chunk that
        every node it reaches dies under gets results that say so rather than none."""
        key = tuple(job.id for job in chunk)
        self.tries[key] += 1
        if self.tries[key] < TRIES:
            self.waiting.append(chunk)
            return
        why = f"its node was lost {TRIES} times while it ran; not tried again"
        yield from (JobResult(job.id, rejected(why)) for job in chunk)

    def _send(self) -> None:
        nodes = self.cluster.nodes()
        room = max(1, self.concurrency // self.size) if self.concurrency else DEPTH * len(nodes)
        busy = collections.Counter({node_id: 0 for node_id in nodes})
        busy.update(node_id for node_id, _ in self.flying.values() if node_id in nodes)
        while len(self.flying) < room:
            node_id = min(busy, key=busy.__getitem__)  # the least busy actor
            chunk = self.waiting.popleft() if self.waiting else self._next_chunk()
            if not chunk:
                return
            self.flying[nodes[node_id].run_jobs.remote(chunk)] = (node_id, chunk)
            busy[node_id] += 1

    def _next_chunk(self) -> list[Job]:
        chunk: list[Job] = []
        for index, item in self.items:
            try:
                chunk.append(as_job(item, index))
            except PolicyError as exc:
                self.refused.append(JobResult(id_of(item, index), rejected(str(exc))))
            if len(chunk) == self.size:
                break
        return chunk


def _unwrapped(ref: Any) -> Any:
    try:
        return ray.get(ref)
    except RayTaskError as exc:  # our own error, raised in the actor: raise it here
        raise exc.cause if isinstance(exc.cause, SandboxError) else exc from None


async def _unwrapped_async(ref: Any) -> Any:
    try:
        return await ref
    except RayTaskError as exc:
        raise exc.cause if isinstance(exc.cause, SandboxError) else exc from None

"""`map` and `amap`: many jobs on one runner (a `Sandbox`), `concurrency` at a time, their
results yielded as they finish.

`map` keeps `concurrency` worker threads; each takes the next job from the caller's iterable
(read lazily, under a lock: a batch may be larger than memory) and runs it on the runner,
which with a pool takes one of its warm sandboxes and otherwise starts a fresh one. The
threads share one cancellation scope (`spawn.cancel.Scope`): when the caller stops early
(an exception such as Ctrl-C's KeyboardInterrupt, or leaving the loop), the runs in
progress are killed and their results dropped, so a result is yielded only for a job that
ran to its end, once. `amap` does the same as asyncio tasks on the runner's `arun` side.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from stockade.batch.jobs import Job, JobResult, Runner, as_job, id_of, rejected, run_job
from stockade.batch.progress import Progress
from stockade.errors import PolicyError
from stockade.spawn.cancel import Scope, cancellable

Item = Job | Mapping[str, Any] | str


def default_concurrency() -> int:
    """The machine's cores (those this process may run on)."""
    return len(os.sched_getaffinity(0))


def one(runner: Runner, item: Item, index: int) -> JobResult:
    """One item of a batch, run: a refused item is its own `setup_failed` result."""
    try:
        job = as_job(item, index)
    except PolicyError as exc:
        return JobResult(id_of(item, index), rejected(str(exc)))
    return JobResult(job.id, run_job(runner, job))


def map_jobs(
    runner: Runner,
    jobs: Iterable[Item],
    *,
    concurrency: int | None = None,
    progress: bool = True,
) -> Iterator[JobResult]:
    """Run `jobs` on `runner`, `concurrency` at a time; yield each `JobResult` as it ends."""
    threads = _concurrency(concurrency)
    bar = Progress(progress, _length(jobs))
    batch = _Batch(runner, jobs)
    workers = [
        threading.Thread(target=batch.work, name=f"stockade-map-{n}", daemon=True)
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    try:
        finished = 0
        while finished < threads:
            got = batch.results.get()
            if got is _FINISHED:
                finished += 1
            elif isinstance(got, BaseException):
                raise got
            else:
                bar.done(not got.result.ok)
                yield got
    finally:
        batch.stop()
        for worker in workers:
            worker.join()
        bar.close()


_FINISHED = object()


class _Batch:
    """What `map`'s worker threads share: the jobs, their results, the scope they run in."""

    def __init__(self, runner: Runner, jobs: Iterable[Item]) -> None:
        self.runner = runner
        self.results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._items = enumerate(jobs)
        self._lock = threading.Lock()
        self._scope = Scope()
        self._stopped = False

    def work(self) -> None:
        try:
            while not self._stopped:
                with self._lock:  # the caller's iterable need not be thread-safe
                    index, item = next(self._items, (None, None))
                if index is None:
                    break
                done = self._scope.call(one, self.runner, item, index)
                if not self._stopped:  # else it was killed in the middle: not a result
                    self.results.put(done)
        except BaseException as exc:  # the caller's iterable, or the runner itself, failed
            self.results.put(exc)
        finally:
            self.results.put(_FINISHED)

    def stop(self) -> None:
        self._stopped = True
        self._scope.cancel()


async def amap_jobs(
    runner: Runner,
    jobs: Iterable[Item],
    *,
    concurrency: int | None = None,
    progress: bool = True,
) -> AsyncIterator[JobResult]:
    """`map_jobs` for asyncio: each job runs in a worker thread as `arun` does; leaving the
    loop, or cancelling the task that iterates, kills the runs in progress."""
    import asyncio

    limit = _concurrency(concurrency)
    bar = Progress(progress, _length(jobs))
    items = enumerate(jobs)
    running: set[asyncio.Task[JobResult]] = set()
    try:
        while True:
            while len(running) < limit and (pair := next(items, None)) is not None:
                running.add(asyncio.ensure_future(cancellable(one, runner, pair[1], pair[0])))
            if not running:
                break
            finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                done = task.result()
                bar.done(not done.result.ok)
                yield done
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        bar.close()


def _concurrency(concurrency: int | None) -> int:
    if concurrency is None:
        return default_concurrency()
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise PolicyError("concurrency", f"expected an integer >= 1, got {concurrency!r}")
    return concurrency


def _length(jobs: Iterable[Item]) -> int | None:
    return len(jobs) if hasattr(jobs, "__len__") else None  # type: ignore[arg-type]

"""Cancelling an `arun`, or a batch: what it has started is killed when it is cancelled.

An `arun` runs its call in a worker thread, which inherits the task's context; the context
variable below lists what that thread has started (a run, or a pooled sandbox at work for
it), so a cancelled task can kill exactly that and nothing else. A batch's worker threads
share one such list, a `Scope`, so an interrupted batch kills the runs it has in progress.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

# What an `arun` of this context has started, to kill if its task is cancelled (the thread
# it runs in inherits the context): a run or a pooled sandbox, anything with kill().
_STARTED: ContextVar[list[Any] | None] = ContextVar("stockade_started", default=None)
_CANCELLED = object()
# The event loop of the `arun` this thread works for: host tools' coroutines run on it.
_LOOP: ContextVar[Any] = ContextVar("stockade_loop", default=None)


def caller_loop() -> Any:
    """The running event loop of the `arun` this thread works for; None outside one."""
    return _LOOP.get()


def cancelled() -> bool:
    """Was the `arun` this thread works for cancelled? Then start nothing more."""
    started = _STARTED.get()
    return started is not None and _CANCELLED in started


@contextlib.contextmanager
def tracked(run: Any) -> Iterator[None]:
    """While in it, a run (or a pooled sandbox at work for us) is killed if the `arun` of
    this context is cancelled; not after: a pooled sandbox goes on to serve others."""
    started = _STARTED.get()
    if started is None:
        yield
        return
    started.append(run)
    if _CANCELLED in started:  # cancelled while it was starting: the loop below missed it
        run.kill()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            started.remove(run)


class Scope:
    """The runs that calls made through `call` start, from any thread, all killed by
    `cancel()`; calls made after it start nothing."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def call(self, function: Callable[..., T], *args: object, **options: object) -> T:
        token = _STARTED.set(self.started)
        try:
            return function(*args, **options)
        finally:
            _STARTED.reset(token)

    def cancel(self) -> None:
        self.started.append(_CANCELLED)  # first: a run started from now on kills itself
        for run in [r for r in self.started if r is not _CANCELLED]:
            run.kill()  # its thread then sees the run end, and returns into nothing


async def cancellable(call: Callable[..., T], *args: object, **options: object) -> T:
    """`call` in a worker thread; cancelling the awaiting task kills what it started."""
    import asyncio  # lazily: the command line never needs it

    scope = Scope()
    loop_token = _LOOP.set(asyncio.get_running_loop())  # the thread's context is a copy
    try:
        return await asyncio.to_thread(scope.call, call, *args, **options)
    except asyncio.CancelledError:
        scope.cancel()
        raise
    finally:
        _LOOP.reset(loop_token)

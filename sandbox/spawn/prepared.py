"""Prepared runs: a `Sandbox`'s next fresh sandbox, set up before it is asked for.

Most of a fresh run's cost does not depend on the call: forking the supervisor and the
run's init, making and joining the cgroup (on cgroup v1 the join waits for an RCU grace
period), the namespaces, the mounts, the privilege drop, the seccomp filter. With `prefork`
(a `Sandbox` option, on by default) that part of the next run is done while the current one
runs; a call then only sends its command, environment, files and stdio, and the init,
already confined, writes the files and starts the workload. Every run is still a fresh
sandbox used once: nothing is shared between calls.

A run is prepared for a plan without its call (`template`); a call whose plan differs in
anything else (another policy's limits, an allowlist, whose names resolve at each run) runs
fresh as usual. Preparing starts with a Sandbox's second run, so one used once costs
nothing more than before.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import socket
import threading

from stockade.spawn import call as calls
from stockade.spawn import server as forkserver
from stockade.spawn.call import Stdio
from stockade.spawn.plan import RunPlan


def template(plan: RunPlan) -> RunPlan | None:
    """The part of `plan` a run can be prepared for; None if it cannot be prepared."""
    if plan.network.rules:
        return None  # names are resolved and the relay made per run
    return plan._replace(argv=(), env={}, files={}, collect=None)


class Standby:
    """At most one prepared run at a time. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: _Prepared | None = None
        self._closed = False
        self._used = False  # a Sandbox used once (a script, the CLI) never prepares a run
        self._owner = os.getpid()

    def _mine(self) -> _Prepared | None:
        """The prepared run, if this process made it. A forked copy of the caller sees its
        parent's, which is not its to use or to end: it forgets it. Under the lock."""
        if self._owner != os.getpid():
            self._owner, self._ready = os.getpid(), None
        return self._ready

    def launch(self, plan: RunPlan, stdio: Stdio) -> forkserver.Launched:
        """Start `plan` on the prepared run if it was prepared for it, else afresh."""
        with self._lock:
            ready, self._ready = self._mine(), None
        if ready is not None:
            if ready.template == template(plan) and (launched := ready.call(plan, stdio)):
                return launched
            ready.close()
        return forkserver.launch(plan, stdio)

    def prepare(self, plan: RunPlan) -> None:
        """Prepare a run for the next call like `plan`, from the second call on. Called once
        a run has ended: preparing joins a cgroup, which on v1 holds the kernel's cgroup lock
        for an RCU grace period, and a run's own cleanup needs that lock too."""
        wanted = template(plan)
        with self._lock, contextlib.suppress(OSError):  # no fork now: the next run is fresh
            if wanted is not None and self._used and not self._closed and self._mine() is None:
                self._ready = _Prepared(wanted)
            self._used = True

    def close(self) -> None:
        """End the prepared run, if any, and wait until it is gone. Idempotent."""
        with self._lock:
            self._closed = True
            ready, self._ready = self._mine(), None
        if ready is not None:
            ready.close()


class _Prepared:
    def __init__(self, wanted: RunPlan) -> None:
        self.template = wanted
        self.launched = forkserver.prepare(wanted)

    def call(self, plan: RunPlan, stdio: Stdio) -> forkserver.Launched | None:
        """Hand the call straight to the prepared run's init; None if it is gone (start
        afresh then). Its supervisor says nothing before the call unless the setup failed,
        and its channel closes when it dies, while its init, killed for that, may still be
        taking a call that nobody would then watch: so ask the channel first."""
        assert self.launched.call is not None
        channel = select.poll()  # not select(): a caller may hold fds above FD_SETSIZE
        channel.register(self.launched.reply, select.POLLIN)
        if channel.poll(0):
            return None
        payload = pickle.dumps(calls.Call(plan.argv, plan.env, plan.files, plan.collect))
        try:
            calls.send(self.launched.call.fileno(), payload, stdio)
        except OSError:
            return None
        finally:
            self.launched.call.close()
        return self.launched

    def close(self) -> None:
        """Its end of file stops the supervisor, which removes everything and exits; read
        to its own end of file, so that all of it is gone when this returns."""
        reply = self.launched.reply
        if self.launched.call is not None:
            self.launched.call.close()
        with contextlib.suppress(OSError):
            reply.shutdown(socket.SHUT_WR)
            while reply.recv(65536):
                pass
        reply.close()
        if self.launched.pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.launched.pid, 0)

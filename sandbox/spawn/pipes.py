"""The host's ends of a run's standard streams: fresh pipes for each run or workspace command,
the far ends handed to whoever starts it, the near ends closed once."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TypeVar

from stockade.spawn.call import Stdio

Handed = TypeVar("Handed")


def hand_over_pipes(
    stdin: int | None, hand_over: Callable[[Stdio], Handed]
) -> tuple[Handed, int | None, int, int]:
    """Make pipes for stdout and stderr, and for stdin unless `stdin` is an fd to hand over;
    call `hand_over` with the far ends (stdin, stdout, stderr), then close them (the other side
    has its own copies), or every pipe made if it raised. Returns what `hand_over` returned and
    the near ends: stdin's write end (None when `stdin` was given), stdout's and stderr's read
    ends."""
    made: list[int] = []
    try:
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        made += (stdout_r, stdout_w)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        made += (stderr_r, stderr_w)
        stdin_w = None
        if stdin is None:
            stdin, stdin_w = os.pipe2(os.O_CLOEXEC)
            made += (stdin, stdin_w)
        handed = hand_over((stdin, stdout_w, stderr_w))
    except BaseException:
        for fd in made:
            os.close(fd)
        raise
    for fd in (stdout_w, stderr_w) + ((stdin,) if stdin_w is not None else ()):
        os.close(fd)
    return handed, stdin_w, stdout_r, stderr_r


class NearEnds:
    """The near ends a run's owner holds: `stdin` is None when an fd was handed over for it
    (or once the caller closed it to send EOF); `stdout` and `stderr` are read ends."""

    def __init__(self, stdin: int | None, stdout: int, stderr: int) -> None:
        self.stdin: int | None = stdin
        self.stdout, self.stderr = stdout, stderr
        self._fds_ours = True  # until closed, or given away

    def _close_fds(self) -> None:
        # The attributes, not the fds we began with: a caller who closed stdin (its only way
        # to send EOF) sets it to None, and its number may belong to another file by now.
        if self._fds_ours:
            self._fds_ours = False
            for fd in (self.stdin, self.stdout, self.stderr):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)

"""`DockerExecutor`: the `Executor` for `CodeExecutionAgent(sandbox="docker")`.

Stockade's own sandbox (`sandbox="built-in"`, the default) needs no daemon and no image; this
backend is for people who already run a Docker engine and want their code there. It is
accepted only when the engine answers (`DockerExecutor.connect`). Each block runs in a fresh
`--rm` container with no network, no capabilities, `no-new-privileges`, an unprivileged user,
a read-only root and a tmpfs /workspace, under the policy's memory, pids and time limits.
The limits are Docker's to enforce; peak memory and CPU time are not measured (0).
"""

from __future__ import annotations

import io
import secrets
import subprocess
import tarfile
import threading
import time
from collections.abc import Mapping
from typing import IO

from stockade import Policy, PolicyError, Result, Status

from ..errors import ConfigError

COMMANDS = {"python": ("python3", "main.py"), "bash": ("bash", "main.sh"), "sh": ("sh", "main.sh")}
DEFAULT_IMAGE = "python:3.12-slim"


class DockerExecutor:
    """Runs code in a throw-away Docker container under `policy`'s limits."""

    def __init__(self, policy: Policy, *, image: str = DEFAULT_IMAGE, docker: str = "docker"):
        self.policy = policy
        self.image = image
        self.docker = docker

    @classmethod
    def connect(cls, policy: Policy, **options: str) -> DockerExecutor:
        """A `DockerExecutor` if a Docker engine answers; `ConfigError` saying why if not."""
        executor = cls(policy, **options)
        problem = engine_problem(executor.docker)
        if problem is not None:
            raise ConfigError(
                f"sandbox='docker' needs a reachable Docker engine: {problem}",
                hint="use sandbox='built-in' (the default), which needs no Docker at all",
            )
        return executor

    def command(self, name: str, language: str) -> list[str]:
        """The `docker run` command line for one block (pure)."""
        limits, fs = self.policy.limits, self.policy.filesystem
        argv = [self.docker, "run", "--rm", "-i", "--name", name, "--network", "none"]
        argv += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only"]
        # Left out of the policy, a uid of the sandbox's own: here nobody's (containers run
        # in the host's user namespace; Docker has no uid allocator).
        uid = self.policy.process.uid or 65534
        argv += ["--user", f"{uid}:{self.policy.process.gid or uid}"]
        argv += ["--tmpfs", f"/workspace:rw,exec,size={fs.workspace_size},mode=1777"]
        argv += ["--tmpfs", f"/tmp:rw,size={fs.tmp_size},mode=1777"]
        argv += ["-w", "/workspace", "-e", "HOME=/workspace"]
        if limits.memory is not None:
            argv += ["--memory", str(limits.memory), "--memory-swap", str(limits.memory)]
        if limits.pids is not None:
            argv += ["--pids-limit", str(limits.pids)]
        # The files come in as a tar stream on stdin, unpacked before the program starts.
        return [*argv, self.image, "sh", "-c", 'tar -xf - && exec "$@"', "sh", *COMMANDS[language]]

    def run_code(
        self, code: str, language: str = "python", *, files: Mapping[str, bytes | str] | None = None
    ) -> Result:
        if language not in COMMANDS:
            raise PolicyError("language", f"unknown language {language!r}")
        name = "stockade-" + secrets.token_hex(6)
        payload = _tar({**(files or {}), COMMANDS[language][1]: code})
        start = time.monotonic()
        proc = subprocess.Popen(
            self.command(name, language),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        limit = self.policy.limits.output
        out, err = _Capped(proc.stdout, limit), _Capped(proc.stderr, limit)
        assert proc.stdin is not None
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the container is gone already; its exit code says why
        try:
            code_ = proc.wait(timeout=self.policy.limits.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            subprocess.run([self.docker, "kill", name], capture_output=True, check=False)
            code_, timed_out = proc.wait(), True
        return _result(code_, timed_out, out.finish(), err.finish(), time.monotonic() - start)


def engine_problem(docker: str = "docker") -> str | None:
    """Why no Docker engine can be used, or None if one answers."""
    try:
        probe = subprocess.run(
            [docker, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except FileNotFoundError:
        return f"the {docker!r} command is not installed"
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 15 s"
    if probe.returncode != 0 or not probe.stdout.strip():
        lines = (probe.stderr or "no answer").strip().splitlines()
        return lines[-1] if lines else "no answer"
    return None


class _Capped:
    """Reads a pipe to its end in a thread, keeping the first `limit` bytes."""

    def __init__(self, pipe: IO[bytes] | None, limit: int) -> None:
        self.kept = bytearray()
        self.truncated = False
        self._thread = threading.Thread(target=self._read, args=(pipe, limit), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes] | None, limit: int) -> None:
        if pipe is None:
            return
        with pipe:
            while chunk := pipe.read(65536):
                room = limit - len(self.kept)
                self.kept += chunk[: max(room, 0)]
                self.truncated |= len(chunk) > room

    def finish(self) -> tuple[bytes, bool]:
        self._thread.join()
        return bytes(self.kept), self.truncated


def _tar(files: Mapping[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else bytes(content)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _result(
    code: int, timed_out: bool, out: tuple[bytes, bool], err: tuple[bytes, bool], wall: float
) -> Result:
    # `docker run` exits 125 when it could not start the container, and 128+N when the
    # program died of signal N.
    signal = code - 128 if code > 128 and not timed_out else None
    if timed_out:
        status = Status.TIMEOUT
    elif code == 125:
        status = Status.SETUP_FAILED
    elif signal is not None:
        status = Status.SIGNALED
    else:
        status = Status.NONZERO_EXIT if code else Status.OK
    error = err[0].decode(errors="replace").strip() if status is Status.SETUP_FAILED else None
    return Result(
        status=status,
        exit_code=None if signal is not None or timed_out else code,
        signal=signal,
        stdout_bytes=out[0],
        stderr_bytes=err[0],
        stdout_truncated=out[1],
        stderr_truncated=err[1],
        wall_time=wall,
        cpu_time=0.0,
        peak_memory=0,
        error=error,
    )

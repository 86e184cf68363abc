"""One API contender inside its own Python process, driven by bench/run.py.

Started as `PYTHON bench/worker.py KIND CONFIG_JSON` with the interpreter that has the
contender's package (the project's for `stockade-api`, bench/.venv's for the peers). It
answers JSON lines on stdout, one per request line on stdin:

    {"op": "run", "program": NAME}                        -> {"ns": ..., "ok": true, ...}
    {"op": "burst", "program": NAME, "threads": N, "seconds": S}  -> {"runs": R, ...}
    {"op": "hold", "program": NAME, "threads": N}          -> {"ok": true} after N runs at once

Times are taken here, around the API call alone, so the pipe to the harness costs nothing.
Only the standard library is imported at the top: the peers' interpreter lacks this project.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

Program = dict[str, Any]  # {"argv": [...], "code": str | None, "language": str, "expect": str}
Outcome = tuple[bool, str]  # (ran and printed what was expected, detail when not)
Runner = Callable[[Program], Outcome]


def _check(exit_code: int | None, stdout: str, program: Program, detail: str) -> Outcome:
    ok = exit_code == 0 and stdout.strip() == program["expect"]
    return ok, "" if ok else f"exit {exit_code}, stdout {stdout[:80]!r}, {detail[:300]}"


class Stockade:
    """This project, through its Python API: `Sandbox(policy).run(argv)`."""

    def __init__(
        self, config: dict[str, Any], pool: int = 0, prefork: bool = True, join: bool = False
    ) -> None:
        import stockade
        from stockade import Policy, Sandbox

        if join:  # the init forks and then joins its cgroup, as where clone3 cannot put it there
            from stockade.kernel.cgroups import control

            control._can_clone_into = False  # before any supervisor or spawn server is forked
        policy = Policy.load(config.get("policy", "default"))
        self.box = Sandbox(policy, pool=pool, prefork=prefork)
        self.version = f"stockade {stockade.__version__} from {os.path.dirname(stockade.__file__)}"

    def supports(self, program: Program) -> bool:
        return True

    def runner(self) -> Runner:
        def run(program: Program) -> Outcome:
            result = self._run(program)
            return _check(result.exit_code, result.stdout, program, result.error or result.stderr)

        return run

    def _run(self, program: Program) -> Any:
        return self.box.run(program["argv"])

    def close(self) -> None:
        self.box.close()


class StockadePool(Stockade):
    """This project's warm pool: `Sandbox(policy, pool=2).run_code(code)`. Each snippet runs
    in a child forked from a warm interpreter in a sandbox kept for the purpose, which is
    wiped between snippets (see docs/pools-and-sessions.md): no interpreter start per run.
    Python source only."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config, pool=2)

    def supports(self, program: Program) -> bool:
        return program["code"] is not None

    def _run(self, program: Program) -> Any:
        return self.box.run_code(program["code"])


class StockadeWorkspace(Stockade):
    """This project's workspace: `Sandbox(policy).workspace().exec(argv)`. Each command is
    forked inside one sandbox that already exists (see docs/workspaces.md): no namespaces,
    mounts or cgroup to make per run."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.workspace = self.box.workspace()

    def _run(self, program: Program) -> Any:
        return self.workspace.exec(program["argv"])

    def close(self) -> None:
        self.workspace.close()
        super().close()


class LlmSandbox:
    """llm-sandbox's daemonless bubblewrap backend: `session.run(code)` on an open session
    (opened once, outside the timing: the cheapest way to use it), and
    `session.execute_command(cmd)` for a program that is not Python source."""

    def __init__(self, config: dict[str, Any]) -> None:
        from importlib.metadata import version

        from llm_sandbox import LocalSandboxConfig, SandboxBackend, SandboxSession
        from llm_sandbox.local.config import DEFAULT_READ_ONLY_PATHS

        python = config["python"]
        self.config = LocalSandboxConfig(
            read_only_paths=(*DEFAULT_READ_ONLY_PATHS, config["python_prefix"]),
            python_executable=python,
        )
        self.factory = lambda: SandboxSession(
            backend=SandboxBackend.BUBBLEWRAP,
            lang="python",
            sandbox_config=self.config,
            skip_environment_setup=True,
        )
        self.sessions: list[Any] = []
        self.lock = threading.Lock()
        self.version = version("llm-sandbox")

    def supports(self, program: Program) -> bool:
        return program["code"] is not None or program["command"] is not None

    def runner(self) -> Runner:
        session = self.factory()
        session.open()
        with self.lock:
            self.sessions.append(session)

        def run(program: Program) -> Outcome:
            if program["code"] is not None:
                out = session.run(program["code"])
            else:
                out = session.execute_command(program["command"])
            return _check(out.exit_code, out.stdout, program, out.stderr)

        return run

    def close(self) -> None:
        for session in self.sessions:
            session.close()


class AutoGen:
    """AutoGen's LocalCommandLineCodeExecutor (autogen-ext): no isolation at all. It runs
    Python blocks with `sys.executable`, which is set to the benchmark's interpreter so
    every contender runs the same binary; shell blocks go through `sh`."""

    def __init__(self, config: dict[str, Any]) -> None:
        import warnings
        from importlib.metadata import version

        from autogen_core import CancellationToken
        from autogen_core.code_executor import CodeBlock
        from autogen_ext.code_executors.local import LocalCommandLineCodeExecutor

        warnings.simplefilter("ignore")  # "may execute code on the local machine": it does
        sys.executable = config["python"]
        self.CodeBlock, self.CancellationToken = CodeBlock, CancellationToken
        self.Executor = LocalCommandLineCodeExecutor
        self.version = version("autogen-ext")
        self.work_dirs: list[tempfile.TemporaryDirectory[str]] = []

    def supports(self, program: Program) -> bool:
        return program["code"] is not None or program["command"] is not None

    def runner(self) -> Runner:
        work_dir = tempfile.TemporaryDirectory(prefix="bench-autogen-")
        self.work_dirs.append(work_dir)
        executor = self.Executor(work_dir=work_dir.name)
        loop = asyncio.new_event_loop()

        def run(program: Program) -> Outcome:
            if program["code"] is not None:
                block = self.CodeBlock(code=program["code"], language="python")
            else:
                block = self.CodeBlock(code=program["command"], language="sh")
            call = executor.execute_code_blocks([block], self.CancellationToken())
            out = loop.run_until_complete(call)
            return _check(out.exit_code, out.output, program, "")

        return run

    def close(self) -> None:
        for work_dir in self.work_dirs:
            work_dir.cleanup()


BACKENDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "stockade-api": Stockade,
    "stockade-api-join": lambda config: Stockade(config, join=True),
    "stockade-fresh": lambda config: Stockade(config, prefork=False),
    "stockade-fresh-join": lambda config: Stockade(config, prefork=False, join=True),
    "stockade-pool": StockadePool,
    "stockade-workspace": StockadeWorkspace,
    "llm-sandbox-api": LlmSandbox,
    "autogen-api": AutoGen,
}


def _guarded(runner: Runner, program: Program) -> Outcome:
    try:
        return runner(program)
    except Exception as exc:  # a failed run is counted, and the others go on
        return False, f"{type(exc).__name__}: {exc}"[:300]


def _burst(backend: Any, program: Program, threads: int, seconds: float) -> dict[str, Any]:
    """Run `threads` loops at once for `seconds`; count the runs that finished."""
    runners = [backend.runner() for _ in range(threads)]
    counts, errors, start = [0] * threads, [0] * threads, threading.Event()
    deadline: list[float] = []

    def loop(index: int) -> None:
        start.wait()
        while time.monotonic() < deadline[0]:
            ok, _ = _guarded(runners[index], program)
            counts[index] += ok
            errors[index] += not ok

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    began = time.monotonic()
    deadline.append(began + seconds)
    start.set()
    for worker in workers:
        worker.join()
    return {"runs": sum(counts), "errors": sum(errors), "seconds": time.monotonic() - began}


def _hold(backend: Any, program: Program, threads: int) -> dict[str, Any]:
    """`threads` runs at once, all started together (the harness samples memory meanwhile)."""
    runners = [backend.runner() for _ in range(threads)]
    outcomes: list[Outcome] = [(False, "not run")] * threads

    def one(index: int) -> None:
        outcomes[index] = _guarded(runners[index], program)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    failed = [detail for ok, detail in outcomes if not ok]
    return {"ok": not failed, "detail": failed[0] if failed else ""}


def serve(kind: str, config: dict[str, Any]) -> None:
    programs: dict[str, Program] = config["programs"]
    try:
        backend = BACKENDS[kind](config)
    except Exception as exc:  # reported to the harness, which skips this contender
        print(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    runner = None
    print(json.dumps({"ready": True, "version": backend.version, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        program = programs[request["program"]]
        try:
            if not backend.supports(program):
                reply: dict[str, Any] = {"unsupported": True}
            elif request["op"] == "run":
                runner = runner or backend.runner()
                began = time.perf_counter_ns()
                ok, detail = _guarded(runner, program)
                reply = {"ns": time.perf_counter_ns() - began, "ok": ok, "detail": detail}
            elif request["op"] == "burst":
                reply = _burst(backend, program, request["threads"], request["seconds"])
            else:
                reply = _hold(backend, program, request["threads"])
        except Exception as exc:
            reply = {"ok": False, "ns": 0, "detail": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps(reply), flush=True)
    backend.close()


if __name__ == "__main__":
    serve(sys.argv[1], json.loads(sys.argv[2]))

"""Benchmark this sandbox against its peers, on this machine, in one run.

    bash bench/setup.sh && python bench/run.py --runs 100

Every contender runs the same programs with the same interpreter binary. The contenders
alternate run by run after a warm-up (round k starts with the k-th contender), so a noisy
neighbour or a frequency change hits all of them alike, and each ratio is taken pair by pair
within a round before its median is taken. Prints a table and writes a JSON file; with
`--results-md` it also rewrites the results part of bench/RESULTS.md.

Contenders (a peer that is not installed is skipped, and the output says why):

    bare             subprocess.run(argv): no sandbox
    unshare          util-linux unshare with our namespaces (mount pid ipc uts net cgroup)
    bwrap            bubblewrap with our isolation: same binds, tmpfs, /proc, /dev, uid,
                     no capabilities, no network, and our seccomp programs (--add-seccomp-fd)
    firejail         firejail --noprofile with the nearest options it has
    stockade-api     Sandbox(Policy.load("default")).run(argv), in a Python process of its own
                     (from its second run on, each run is prepared ahead of its call)
    stockade-fresh   the same with prefork=False: every run set up after its call
    stockade-*-join  either, with the init forked and then joining its cgroup, as on v1 or a
                     kernel < 5.7, instead of born in it by clone3 (v2); vs_*-join in the JSON
    stockade-pool    Sandbox(policy, pool=2).run_code(code): a warm pool, Python source only
    stockade-workspace  Sandbox(policy).workspace().exec(argv): a command forked in one
                     sandbox that exists already
    stockade-cli     `sandbox run -- argv`: a fresh interpreter, its imports, the policy, the run
    python-startup   `python -c pass` with the CLI's interpreter: what the CLI is measured against
    llm-sandbox-api  llm-sandbox's bubblewrap backend: session.run(code) on an open session
    autogen-api      AutoGen's LocalCommandLineCodeExecutor (no isolation at all)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS_PYTHON = BENCH / ".venv" / "bin" / "python"
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"
WORK = "import time\nend = time.process_time() + 0.05\nwhile time.process_time() < end: pass\n"
RESULTS_BEGIN, RESULTS_END = "<!-- results -->", "<!-- /results -->"


class RunFailed(Exception):
    pass


# --- programs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    name: str
    title: str
    argv: tuple[str, ...]
    expect: str = ""  # stdout, stripped
    code: str | None = None  # the same program as Python source, for code-running APIs

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def wire(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "expect": self.expect, "code": self.code,
                "command": self.command}  # fmt: skip


def programs(python: str, hold_seconds: float) -> dict[str, Program]:
    work = WORK + "print('ok')"
    listed = [
        Program("true", "/bin/true", ("/bin/true",)),
        Program("py-S-pass", "python3 -S -c pass", (python, "-S", "-c", "pass")),
        Program("py-print", "python3 -c 'print(1)'", (python, "-c", "print(1)"), "1", "print(1)"),
        Program("py-work", "python3, 50 ms CPU loop", (python, "-c", work), "ok", work),
        # Not timed: what runs while the memory of concurrent runs is sampled.
        Program("sleep", f"sleep {hold_seconds}", ("/bin/sleep", str(hold_seconds))),
    ]
    return {program.name: program for program in listed}


# --- the interpreter ----------------------------------------------------------------------------


def real_interpreter(candidate: str) -> str:
    """The interpreter binary itself: symlinks resolved, and a version-manager shim (pyenv's
    is a shell script costing ~100 ms a start) replaced by what it runs."""
    path = os.path.realpath(candidate)
    with open(path, "rb") as file:
        if file.read(4) == b"\x7fELF":
            return path
    out = subprocess.run([path, "-c", "import sys; print(sys.executable)"], capture_output=True)
    return os.path.realpath(out.stdout.decode().strip())


def interpreter_facts(python: str, cli_python: str) -> dict[str, Any]:
    code = (
        "import json, site, sys; print(json.dumps({'version': sys.version.split()[0], "
        "'prefix': sys.base_prefix, 'site_packages': site.getsitepackages()}))"
    )
    facts = json.loads(subprocess.run([python, "-c", code], capture_output=True).stdout)
    pth = sorted(
        name
        for directory in facts["site_packages"]
        if os.path.isdir(directory)
        for name in os.listdir(directory)
        if name.endswith(".pth")
    )
    which = shutil.which("python3") or ""
    return {
        "workload_python": python,
        "version": facts["version"],
        "prefix": os.path.realpath(facts["prefix"]),
        "site": "runs (no -S) except in py-S-pass",
        "site_packages": facts["site_packages"],
        "pth_files": pth,
        "cli_python": cli_python,
        "python3_on_path": which,
        "python3_on_path_is_shim": bool(which)
        and real_interpreter(which) != os.path.realpath(which),
    }


# --- contenders ---------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    kind: str  # "process" or "api"
    available: bool = True
    reason: str = ""
    version: str = ""
    only: tuple[str, ...] = ()  # programs it runs; empty: all

    def supports(self, program: Program) -> bool:
        return not self.only or program.name in self.only

    def run_once(self, program: Program) -> float:
        raise NotImplementedError

    def burst(self, program: Program, threads: int, seconds: float) -> tuple[int, int, float]:
        raise NotImplementedError

    def hold(self, program: Program, threads: int) -> tuple[list[int], Callable[[], None]]:
        """Start `threads` runs at once: (pids whose process trees are the sandbox's, wait)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class ProcessContender(Contender):
    """A command line wrapped around the program, started with subprocess like a user would."""

    wrap: Callable[[tuple[str, ...], list[int]], list[str]] = lambda argv, fds: list(argv)
    env: dict[str, str] = field(default_factory=dict)
    fds: Callable[[], list[int]] = list  # fds to hand over, opened for each run
    replace: Callable[[Program], tuple[str, ...]] | None = None  # runs this instead

    def _popen(self, program: Program) -> tuple[subprocess.Popen[bytes], list[int]]:
        argv = self.replace(program) if self.replace else program.argv
        fds = self.fds()
        try:
            process = subprocess.Popen(
                self.wrap(argv, fds),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env or {"PATH": CLEAN_PATH, "LANG": "C.UTF-8"},
                pass_fds=fds,
            )
        finally:
            for fd in fds:
                os.close(fd)
        return process, fds

    def _finish(self, process: subprocess.Popen[bytes], program: Program) -> None:
        out, err = process.communicate()
        expect = "" if self.replace else program.expect
        if process.returncode != 0 or out.decode(errors="replace").strip() != expect:
            raise RunFailed(f"exit {process.returncode}: {out[:80]!r} {err[-300:]!r}")

    def run_once(self, program: Program) -> float:
        began = time.perf_counter_ns()
        process, _ = self._popen(program)
        self._finish(process, program)
        return (time.perf_counter_ns() - began) / 1e9

    def burst(self, program: Program, threads: int, seconds: float) -> tuple[int, int, float]:
        counts, errors = [0] * threads, [0] * threads
        deadline = time.monotonic() + seconds

        def loop(index: int) -> None:
            while time.monotonic() < deadline:
                try:
                    self.run_once(program)
                    counts[index] += 1
                except RunFailed:
                    errors[index] += 1

        began = time.monotonic()
        workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return sum(counts), sum(errors), time.monotonic() - began

    def hold(self, program: Program, threads: int) -> tuple[list[int], Callable[[], None]]:
        started = [self._popen(program)[0] for _ in range(threads)]

        def wait() -> None:
            for process in started:
                self._finish(process, program)

        return [process.pid for process in started], wait


class WorkerContender(Contender):
    """An API contender, living in a worker process of its own interpreter (bench/worker.py)."""

    def __init__(self, name: str, python: str, env: dict[str, str], config: dict[str, Any]):
        super().__init__(name, "api")
        self.process: subprocess.Popen[str] | None = None
        self.unsupported: set[str] = set()
        try:
            self.process = subprocess.Popen(
                [python, str(BENCH / "worker.py"), name, json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            ready = self._read()
        except (OSError, ValueError) as exc:
            ready = {"ready": False, "error": str(exc)}
        self.available = bool(ready.get("ready"))
        self.reason = ready.get("error", "")
        self.version = ready.get("version", "")
        self.pid = ready.get("pid", 0)

    def _read(self) -> dict[str, Any]:
        assert self.process and self.process.stdout
        line = self.process.stdout.readline()
        if not line:
            raise ValueError(f"the worker exited ({self.process.wait()})")
        return json.loads(line)

    def _ask(self, **request: Any) -> dict[str, Any]:
        assert self.process and self.process.stdin
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def supports(self, program: Program) -> bool:
        return super().supports(program) and program.name not in self.unsupported

    def run_once(self, program: Program) -> float:
        reply = self._ask(op="run", program=program.name)
        if reply.get("unsupported"):
            self.unsupported.add(program.name)
            raise RunFailed("unsupported")
        if not reply["ok"]:
            raise RunFailed(reply["detail"])
        return reply["ns"] / 1e9

    def burst(self, program: Program, threads: int, seconds: float) -> tuple[int, int, float]:
        reply = self._ask(op="burst", program=program.name, threads=threads, seconds=seconds)
        return reply["runs"], reply["errors"], reply["seconds"]

    def hold(self, program: Program, threads: int) -> tuple[list[int], Callable[[], None]]:
        assert self.process and self.process.stdin
        self.process.stdin.write(json.dumps({"op": "hold", "program": program.name,
                                             "threads": threads}) + "\n")  # fmt: skip
        self.process.stdin.flush()

        def wait() -> None:
            reply = self._read()
            if not reply["ok"]:
                raise RunFailed(reply["detail"])

        return [-self.pid], wait  # negative: its descendants count, the worker itself not

    def close(self) -> None:
        if self.process:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # type: ignore[union-attr]
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


@dataclass
class Isolation:
    """What our default policy gives a run, for the peers to mirror (and our seccomp BPF)."""

    binds: list[tuple[str, str | None]]  # (path, symlink target or None for a read-only bind)
    seccomp: tuple[bytes, ...]
    note: str


def our_isolation(python_prefix: str) -> Isolation:
    try:
        from stockade.kernel import seccomp
        from stockade.policy.model import Policy

        readonly = Policy.load("default").filesystem.readonly
        programs, note = seccomp.compile_filters(), "our seccomp programs loaded by bwrap"
    except Exception as exc:  # the harness still runs, with a plainer bwrap
        readonly = ("/usr", "/bin", "/lib", "/lib64", "/etc/ssl", "/etc/ld.so.cache")
        programs, note = (), f"bwrap without seccomp: cannot import stockade ({exc})"
    binds: list[tuple[str, str | None]] = []
    for path in sorted({*readonly, python_prefix}):
        if os.path.islink(path):
            binds.append((path, os.readlink(path)))
        elif os.path.exists(path):
            binds.append((path, None))
    return Isolation(binds, programs, note)


def _bpf_files(programs: tuple[bytes, ...], scratch: str) -> Callable[[], list[int]]:
    paths = []
    for index, program in enumerate(programs):
        path = os.path.join(scratch, f"seccomp-{index}.bpf")
        Path(path).write_bytes(program)
        paths.append(path)
    return lambda: [os.open(path, os.O_RDONLY) for path in paths]


def bwrap_contender(isolation: Isolation, scratch: str) -> ProcessContender:
    fds = _bpf_files(isolation.seccomp, scratch)
    mounts: list[str] = []
    for path, target in isolation.binds:
        mounts += ["--symlink", target, path] if target else ["--ro-bind", path, path]
    base = [
        "bwrap", "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
        "--disable-userns", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL",
        "--hostname", "sandbox",
        *mounts, "--proc", "/proc", "--dev", "/dev",
        "--size", str(64 << 20), "--tmpfs", "/tmp",
        "--size", str(64 << 20), "--tmpfs", "/workspace", "--remount-ro", "/",
        "--chdir", "/workspace", "--clearenv", "--setenv", "PATH", CLEAN_PATH,
        "--setenv", "HOME", "/workspace", "--setenv", "LANG", "C.UTF-8",
    ]  # fmt: skip
    count = len(isolation.seccomp)

    def wrap(argv: tuple[str, ...], fds: list[int]) -> list[str]:
        # The BPF files are opened afresh for each run: bwrap reads each fd to its end.
        seccomp = [arg for fd in fds for arg in ("--add-seccomp-fd", str(fd))]
        return [*base, *seccomp, "--", *argv]

    contender = ProcessContender("bwrap", "process", wrap=wrap, fds=fds)
    contender.version = _tool_version(["bwrap", "--version"])
    contender.reason = f"{isolation.note} ({count} programs)" if count else isolation.note
    return contender


def firejail_contender(python_prefix: str) -> ProcessContender:
    # Without --private the home directory stays visible; whitelisting the interpreter's
    # prefix (when it lives in a home, as pyenv's does) hides the rest of it.
    home = python_prefix.startswith(("/root/", "/home/"))
    whitelist = [f"--whitelist={python_prefix}"] if home else []
    base = [
        "firejail", "--quiet", "--noprofile", "--net=none", "--private-tmp", "--private-dev",
        "--caps.drop=all", "--nonewprivs", "--seccomp", "--nogroups", "--hostname=sandbox",
        "--ipc-namespace", *whitelist,
    ]  # fmt: skip
    contender = ProcessContender("firejail", "process", wrap=lambda argv, _: [*base, "--", *argv])
    contender.version = _tool_version(["firejail", "--version"])
    contender.reason = "runs as the caller's uid (root here): firejail cannot switch uid"
    return contender


def unshare_contender() -> ProcessContender:
    flags = ["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--fork"]
    if os.geteuid() != 0:
        flags += ["--user", "--map-root-user"]
    contender = ProcessContender(
        "unshare", "process", wrap=lambda argv, _: ["unshare", *flags, *argv]
    )
    contender.version = _tool_version(["unshare", "--version"])
    return contender


def cli_argv(cli_python: str) -> list[str]:
    script = Path(cli_python).parent / "sandbox"
    if script.exists():
        return [str(script)]
    # What the installed `sandbox` script does, for a Python with stockade but no script.
    return [cli_python, "-c", "import sys; from stockade.cli import main; sys.exit(main())"]


def _cli_wrap(cli_python: str) -> Callable[[tuple[str, ...], list[int]], list[str]]:
    base = cli_argv(cli_python)
    return lambda argv, _: [*base, "run", "--", *argv]


def make_contenders(
    names: list[str],
    programs_: dict[str, Program],
    facts: dict[str, Any],
    scratch: str,
) -> list[Contender]:
    python, cli_python = facts["workload_python"], facts["cli_python"]
    project_env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8"}  # stockade is installed there
    config = {
        "programs": {name: program.wire() for name, program in programs_.items()},
        "python": python,
        "python_prefix": facts["prefix"],
    }
    isolation = our_isolation(facts["prefix"])
    tools = {"unshare": "unshare", "bwrap": "bwrap", "firejail": "firejail"}
    made: list[Contender] = []
    for name in names:
        contender: Contender
        if name in tools and not shutil.which(tools[name]):
            missing = f"`{tools[name]}` not found: run bench/setup.sh"
            contender = Contender(name, "process", False, missing)
        elif name == "bare":
            contender = ProcessContender("bare", "process")
        elif name == "unshare":
            contender = unshare_contender()
        elif name == "bwrap":
            contender = bwrap_contender(isolation, scratch)
        elif name == "firejail":
            contender = firejail_contender(facts["prefix"])
        elif name == "stockade-cli":
            contender = ProcessContender(
                name, "process", wrap=_cli_wrap(cli_python), env=project_env
            )
        elif name == "python-startup":
            contender = ProcessContender(
                name, "process", only=("true",), replace=lambda _: (cli_python, "-c", "pass")
            )
            contender.reason = f"{cli_python} -c pass, timed in the `true` block only"
        elif name in ("stockade-api", "stockade-api-join", "stockade-fresh", "stockade-fresh-join",
                      "stockade-workspace"):  # fmt: skip
            contender = WorkerContender(name, cli_python, project_env, config)
        elif name == "stockade-pool":
            contender = WorkerContender(name, cli_python, project_env, config)
            contender.only = ("py-print", "py-work")  # Python source; pool_bench.py has the rest
        elif not PEERS_PYTHON.exists():
            contender = Contender(name, "api", False, f"{PEERS_PYTHON} missing: run bench/setup.sh")
        else:
            contender = WorkerContender(name, str(PEERS_PYTHON), {"PATH": CLEAN_PATH}, config)
        if contender.available:
            _probe(contender, next(p for p in programs_.values() if contender.supports(p)))
        made.append(contender)
    return made


def _probe(contender: Contender, program: Program) -> None:
    """One run before anything is timed: a contender that cannot run is skipped, with why."""
    try:
        contender.run_once(program)
    except (RunFailed, OSError) as exc:
        contender.available, contender.reason = False, f"cannot run here: {exc}"[:400]


# --- measuring ----------------------------------------------------------------------------------


def alternate(
    program: Program, contenders: list[Contender], runs: int, warmup: int
) -> dict[str, list[float | None]]:
    """Round k runs every contender once, starting with the k-th: A B C, B C A, C A B, ..."""
    active = [c for c in contenders if c.supports(program)]
    if not active:  # every contender asked for was skipped, or none runs this program
        return {}
    samples: dict[str, list[float | None]] = {c.name: [] for c in active}
    errors: dict[str, str] = {}
    for round_ in range(warmup + runs):
        shift = round_ % len(active)
        for contender in active[shift:] + active[:shift]:
            if not contender.supports(program):
                continue
            try:
                seconds: float | None = contender.run_once(program)
            except RunFailed as exc:
                seconds, errors[contender.name] = None, str(exc)
            if round_ >= warmup:
                samples[contender.name].append(seconds)
    for name, error in errors.items():
        print(f"  {program.name}: {name} failed at least once: {error[:200]}", file=sys.stderr)
    return {name: values for name, values in samples.items() if any(values)}


def summarize(values: list[float | None]) -> dict[str, Any]:
    ok = sorted(v for v in values if v is not None)
    deciles = statistics.quantiles(ok, n=10, method="inclusive") if len(ok) > 1 else ok * 9
    ms = [round(v * 1e3, 3) for v in (statistics.median(ok), deciles[8], ok[0], ok[-1])]
    return dict(zip(("median_ms", "p90_ms", "min_ms", "max_ms"), ms, strict=True)) | {
        "runs": len(ok),
        "failed": len(values) - len(ok),
    }


def paired(values: list[float | None], reference: list[float | None]) -> dict[str, float] | None:
    """The median of per-round ratios, and of per-round differences: noise cancels in pairs."""
    pairs = [(v, r) for v, r in zip(values, reference, strict=False) if v and r]
    if not pairs:
        return None
    return {
        "ratio": round(statistics.median(v / r for v, r in pairs), 3),
        "extra_ms": round(statistics.median((v - r) * 1e3 for v, r in pairs), 3),
    }


def analyse(samples: dict[str, list[float | None]]) -> dict[str, Any]:
    out = {}
    for name, values in samples.items():
        entry = summarize(values)
        refs = ("bare", "bwrap", "stockade-api", "stockade-pool", "python-startup")
        for ref in (*refs, f"{name}-join"):  # -join: clone3's gain, on cgroup v2
            if ref in samples and ref != name:
                entry[f"vs_{ref}"] = paired(values, samples[ref])
        out[name] = entry
    return out


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, command name), for every process we can see."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                table[int(entry)] = (int(stat[stat.rindex(")") + 2 :].split()[1]), name)
    return table


def _pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def sandbox_memory(roots: list[int], workload: str) -> tuple[int, int]:
    """(KiB of PSS of every process in the roots' trees but the workload's, workloads alive).
    A negative root counts its descendants only."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, stack = set(), []
    for root in roots:
        stack += children.get(-root, []) if root < 0 else [root]
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.add(pid)
            stack += children.get(pid, [])
    workloads = [pid for pid in seen if table.get(pid, (0, ""))[1] == workload]
    return sum(_pss_kib(pid) for pid in seen if pid not in workloads), len(workloads)


def memory_per_run(contender: Contender, program: Program, threads: int) -> float | None:
    """MiB of PSS that the sandbox's own processes hold per concurrent run (workload excluded)."""
    roots, wait = contender.hold(program, threads)
    readings = []
    done = threading.Event()
    failure: list[BaseException] = []

    def finish() -> None:
        try:
            wait()
        except BaseException as exc:
            failure.append(exc)
        done.set()

    threading.Thread(target=finish, daemon=True).start()
    while not done.wait(0.1):
        kib, alive = sandbox_memory(roots, "sleep")
        if alive == threads:
            readings.append(kib)
    if failure or not readings:
        return None
    return round(statistics.median(readings) / 1024 / threads, 2)


# --- reporting ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    distro = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')
    mounts = Path("/proc/self/mountinfo").read_text()
    cgroup = "v1 (legacy/hybrid)" if " - cgroup " in mounts else "v2"
    return {
        "host": platform.node(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "distro": distro,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory": memory,
        "cgroups": cgroup,
        "root": os.geteuid() == 0,
    }


def _ratio(entry: dict[str, Any], ref: str) -> str:
    pair = entry.get(f"vs_{ref}")
    return f"{pair['ratio']:.2f}" if pair else "-"


def _extra(entry: dict[str, Any]) -> str:
    pair = entry.get("vs_bare")
    return f"{pair['extra_ms']:+.1f}" if pair else "-"


def latency_table(report: dict[str, Any]) -> list[str]:
    lines = []
    head = (f"{'contender':<19} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}  {'x bare':>6} "
            f"{'x bwrap':>7} {'+bare ms':>8}")  # fmt: skip
    for block in report["programs"].values():
        lines += ["", f"{block['title']}  ({block['rounds']} alternated rounds, ms)", head]
        for contender, entry in block["results"].items():
            failed = f"  ({entry['failed']} failed)" if entry["failed"] else ""
            lines.append(
                f"{contender:<19} {entry['median_ms']:8.2f} {entry['p90_ms']:8.2f} "
                f"{entry['min_ms']:8.2f} {entry['max_ms']:8.2f}  {_ratio(entry, 'bare'):>6} "
                f"{_ratio(entry, 'bwrap'):>7} {_extra(entry):>8}{failed}"
            )
    return lines


def throughput_table(report: dict[str, Any]) -> list[str]:
    blocks = report.get("throughput") or {}
    if not blocks:
        return []
    levels = sorted({int(n) for block in blocks.values() for n in block["runs_per_s"]})
    head = f"{'contender':<19} " + " ".join(f"{f'{n} at once':>10}" for n in levels)
    lines = ["", "Throughput of /bin/true (runs/s) and sandbox memory per concurrent run", head]
    lines[-1] += f" {'MiB/run':>8}  failed runs"
    for name, block in blocks.items():
        cells = " ".join(f"{block['runs_per_s'].get(str(n), 0):10.1f}" for n in levels)
        memory = block.get("memory_mib_per_run")
        errors = sum(block["errors"].values())
        lines.append(
            f"{name:<19} {cells} {memory if memory is not None else '-':>8}  {errors or ''}"
        )
    return lines


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    progs = report["programs"]

    def pair(program: str, name: str, ref: str) -> float | None:
        entry = progs.get(program, {}).get("results", {}).get(name, {})
        value = entry.get(f"vs_{ref}")
        return value["ratio"] if value else None

    llm = pair("py-print", "llm-sandbox-api", "stockade-api")
    checks = [
        ("stockade-api / bwrap on /bin/true <= 0.8", pair("true", "stockade-api", "bwrap"), 0.8),
        ("stockade-api / bwrap on print(1) <= 1.0", pair("py-print", "stockade-api", "bwrap"), 1.0),
        ("stockade-workspace / bwrap on /bin/true <= 0.5",
         pair("true", "stockade-workspace", "bwrap"), 0.5),
        ("stockade-cli / python -c pass on /bin/true <= 2.0",
         pair("true", "stockade-cli", "python-startup"), 2.0),
        ("llm-sandbox-api / stockade-api on print(1) >= 3.0", llm, 3.0),
        ("llm-sandbox-api / stockade-pool on print(1) >= 3.0",
         pair("py-print", "llm-sandbox-api", "stockade-pool"), 3.0),
    ]  # fmt: skip
    out = []
    for text, value, limit in checks:
        met = None if value is None else (value >= limit if ">=" in text else value <= limit)
        out.append({"target": text, "measured": value, "met": met})
    return out


def render(report: dict[str, Any]) -> str:
    m, i = report["machine"], report["interpreter"]
    lines = [
        f"Stockade benchmark, {report['date']}",
        f"machine: {m['cpu']} x{m['cpus']}, {m['memory']}, {m['distro']}, Linux {m['kernel']}, "
        f"cgroups {m['cgroups']}, root={m['root']}",
        f"workload interpreter: {i['workload_python']} (Python {i['version']}); site runs except "
        f"with -S; .pth files: {', '.join(i['pth_files']) or 'none'}",
        f"CLI interpreter: {i['cli_python']}",
    ]
    if i["python3_on_path_is_shim"]:
        lines.append(f"note: python3 on PATH ({i['python3_on_path']}) is a shim; not used here")
    lines.append("contenders:")
    for name, c in report["contenders"].items():
        state = f"{c['version'] or 'ok'}" if c["available"] else "SKIPPED"
        lines.append(f"  {name:<19} {state}{'; ' + c['reason'] if c['reason'] else ''}")
    lines += latency_table(report) + throughput_table(report)
    lines += ["", "Targets (pairwise median ratios):"]
    for t in report["targets"]:
        mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        value = "-" if t["measured"] is None else f"{t['measured']:.2f}"
        lines.append(f"  {t['target']:<52} {value:>6}  {mark}")
    return "\n".join(lines)


def write_results_md(path: Path, text: str) -> None:
    """Replace the part of RESULTS.md between the results markers; keep the analysis."""
    block = f"{RESULTS_BEGIN}\n```\n{text}\n```\n{RESULTS_END}"
    old = path.read_text() if path.exists() else f"# Benchmark results\n\n{RESULTS_END}\n"
    if RESULTS_BEGIN in old and RESULTS_END in old:
        head, rest = old.split(RESULTS_BEGIN, 1)
        new = head + block + rest.split(RESULTS_END, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


# --- main ---------------------------------------------------------------------------------------

ALL = ["bare", "unshare", "bwrap", "firejail", "stockade-api", "stockade-pool",
       "stockade-workspace", "stockade-cli", "python-startup", "llm-sandbox-api", "autogen-api",
       "stockade-fresh", "stockade-api-join", "stockade-fresh-join"]  # fmt: skip
PROGRAMS = ["true", "py-S-pass", "py-print", "py-work"]


def _list(text: str) -> list[str]:
    return [item for item in text.split(",") if item]


# Argparse types: a bad value is refused before anything starts (argparse names the option
# and exits 2), not met as a traceback minutes into a run.


def _names(kind: str, choices: list[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = list(dict.fromkeys(_list(text)))  # a repeat would be timed twice, under one name
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            bad = f"unknown {kind} {','.join(unknown)!r}" if unknown else f"no {kind} in {text!r}"
            raise argparse.ArgumentTypeError(f"{bad} (choose from {', '.join(choices)})")
        return names

    return parse


def _number(convert: type[int] | type[float], least: float) -> Callable[[str], Any]:
    def parse(text: str) -> int | float:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < least:
            what = "an integer" if convert is int else "a finite number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} >= {least}")
        return value

    return parse


def _levels(text: str) -> list[int]:
    levels = [_number(int, 1)(item) for item in _list(text)]
    if not levels:
        raise argparse.ArgumentTypeError(f"no level in {text!r} (want integers >= 1)")
    return levels


def _executable(text: str) -> str:
    if not (os.path.isfile(text) and os.access(text, os.X_OK)):
        raise argparse.ArgumentTypeError(f"{text!r} is not an executable file")
    return text


def _output(text: str) -> Path:
    # Written at the end: a missing directory would throw the whole run away.
    path = Path(text)
    if path.is_dir() or not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file in an existing directory")
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    only = f"contenders, comma-separated, of: {', '.join(ALL)} (default: all)"
    progs = f"programs, comma-separated, of: {', '.join(PROGRAMS)} (default: all)"
    add("--runs", type=_number(int, 1), default=100, help="timed rounds per program (default 100)")
    add("--warmup", type=_number(int, 0), default=5, help="untimed rounds first (default 5)")
    add("--only", type=_names("contender", ALL), default=ALL, help=only)
    add("--programs", type=_names("program", PROGRAMS), default=PROGRAMS, help=progs)
    add("--concurrency", type=_levels, default=[1, 2, 8], help="throughput levels (default 1,2,8)")
    add("--throughput-seconds", type=_number(float, 0), default=3.0, help="per level (0: skip)")
    add("--memory-runs", type=_number(int, 0), default=8, help="concurrent runs sampled (0: skip)")
    # Memory is sampled every 0.1 s, once the sandboxes are up: shorter holds see nothing.
    add("--hold-seconds", type=_number(float, 0.5), default=2.0, help="a sampled run's sleep")
    add("--python", type=_executable, default=sys.executable, help="workload's Python (resolved)")
    add("--json", type=_output, default=BENCH / "results.json", help="where the JSON goes")
    add("--results-md", type=_output, help="rewrite the results block of this file (RESULTS.md)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    python = real_interpreter(args.python)
    facts = interpreter_facts(python, sys.executable)
    progs = programs(python, args.hold_seconds)
    with _scratch() as scratch:
        contenders = make_contenders(args.only, progs, facts, scratch)
        try:
            report = run_all(args, progs, contenders, facts)
        finally:
            for contender in contenders:
                contender.close()
    text = render(report)
    print(text)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nJSON: {args.json}")
    if args.results_md:
        write_results_md(args.results_md, text)
        print(f"table written into {args.results_md}")
    return report


@contextlib.contextmanager
def _scratch() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="stockade-bench-") as scratch:
        yield scratch


def run_all(
    args: argparse.Namespace,
    progs: dict[str, Program],
    contenders: list[Contender],
    facts: dict[str, Any],
) -> dict[str, Any]:
    ready = [c for c in contenders if c.available]
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "interpreter": facts,
        "settings": {"runs": args.runs, "warmup": args.warmup},
        "contenders": {
            c.name: {
                "kind": c.kind,
                "available": c.available,
                "reason": c.reason,
                "version": c.version,
            }
            for c in contenders
        },
        "programs": {},
        "throughput": {},
    }
    for name in args.programs:
        program = progs[name]
        print(f"timing {program.title} ...", file=sys.stderr)
        samples = alternate(program, ready, args.runs, args.warmup)
        report["programs"][name] = {
            "title": program.title,
            "argv": list(program.argv),
            "rounds": args.runs,
            "results": analyse(samples),
            "samples_ms": {k: [v and round(v * 1e3, 3) for v in vs] for k, vs in samples.items()},
        }
    for contender in ready:
        if contender.name == "python-startup" or not contender.supports(progs["true"]):
            continue
        block: dict[str, Any] = {"runs_per_s": {}, "errors": {}}
        if args.throughput_seconds > 0:
            print(f"throughput of {contender.name} ...", file=sys.stderr)
            for level in args.concurrency:
                runs, errors, seconds = contender.burst(
                    progs["true"], level, args.throughput_seconds
                )
                block["runs_per_s"][str(level)] = round(runs / seconds, 1)
                block["errors"][str(level)] = errors
        if args.memory_runs > 0:
            memory = memory_per_run(contender, progs["sleep"], args.memory_runs)
            block["memory_mib_per_run"] = memory
        report["throughput"][contender.name] = block
    report["targets"] = targets(report)
    return report


if __name__ == "__main__":
    main()

"""Faults: the supervisor or the spawn server killed mid-run, the disk holding the temp dirs
full, cgroups that cannot be made, a workload that closes its stdout early or never reads
its stdin. Each must end cleanly: a clear setup_failed (exit 125) naming the cause, or the
run's own result, and nothing left behind (the autouse leak check, and the checks here).

The machine-level faults are made for real in a private mount namespace of a child process
(`unshare --mount`): a full tmpfs as TMPDIR, /sys/fs/cgroup hidden, unmounted or read-only.
The host's own mounts are never touched.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from stockade import Policy, Sandbox, Status

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")

REPO = Path(__file__).parents[2]
CLI = [sys.executable, "-m", "stockade", "run"]


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if marker in " ".join(process.info["cmdline"] or ()):
                found.append(process)
    return found


def _wait_gone(marker: str, seconds: float, but: int = 0) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in _processes_with(marker) if p.pid != but]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _stale(pid: int) -> list[str]:
    """Run dirs and cgroups named after supervisor `pid`."""
    found = glob.glob(f"/tmp/stockade-{pid}-*")
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(root) == "stockade":
            found += [os.path.join(root, d) for d in dirs if d.startswith(f"{pid}-")]
            dirs.clear()
    return found


# ------------------------------------------------------------------ the supervisor is killed


class KilledSupervisor:
    """A CLI run of `sleep` whose supervisor process gets SIGKILL once the workload is up."""

    def __init__(self) -> None:
        self.marker = f"stockade-fault-{uuid.uuid4().hex}"
        script = f"echo up; sleep 1000; : {self.marker}"
        self.cli = subprocess.Popen(
            [*CLI, "--timeout", "60", "--", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        assert self.cli.stdout is not None and self.cli.stdout.readline() == b"up\n"
        (supervisor,) = psutil.Process(self.cli.pid).children()
        self.supervisor = supervisor.pid
        supervisor.kill()
        # The CLI carries the marker in its argv (so does the run's init, a fork of it).
        self.survivors = _wait_gone(self.marker, 5, but=self.cli.pid)
        self.ended: tuple[int, bytes] | None = None

    def finish(self) -> tuple[int, bytes]:
        """Kill what survived (so the CLI can end), and return the CLI's exit and stderr."""
        if self.ended is None:
            _kill_all(_wait_gone(self.marker, 0, but=self.cli.pid))
            try:
                _, err = self.cli.communicate(timeout=20)
            finally:
                self.cli.kill()
                self.cli.wait()
            self.ended = (self.cli.returncode, err)
        return self.ended


@pytest.fixture
def killed_supervisor() -> KilledSupervisor:
    killed = KilledSupervisor()
    yield killed
    killed.finish()
    # whatever the outcome, leave the machine as the leak check expects it
    subprocess.run([*CLI, "--", "true"], cwd=REPO, check=True, timeout=60)


def test_the_run_dies_with_its_sigkilled_supervisor(killed_supervisor: KilledSupervisor) -> None:
    assert killed_supervisor.survivors == [], "the workload outlived its supervisor"


def test_the_next_start_cleans_up_after_a_sigkilled_supervisor(
    killed_supervisor: KilledSupervisor,
) -> None:
    code, err = killed_supervisor.finish()
    assert code == 125, (code, err)
    assert b"Traceback" not in err, err
    left = _stale(killed_supervisor.supervisor)
    assert left, "the killed supervisor should have left its run dir and cgroup"
    done = subprocess.run([*CLI, "--", "true"], cwd=REPO, capture_output=True, timeout=60)
    assert done.returncode == 0, done
    assert _stale(killed_supervisor.supervisor) == [], "the next start did not clean up"


@pytest.mark.no_leak_check  # the spawn server is replaced: the process snapshot changes
def test_a_sigkilled_spawn_server_ends_its_runs_and_is_replaced() -> None:
    from stockade.spawn import server as forkserver

    marker = f"stockade-fault-{uuid.uuid4().hex}"
    box = Sandbox(Policy.load("default").override(timeout=60))
    # From a worker thread (two threads in all), runs go through the spawn server.
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(box.run, ["sh", "-c", f"sleep 1000; : {marker}"])
        try:
            deadline = time.monotonic() + 20
            while not _processes_with(marker) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _processes_with(marker), "the run never started"
            server = forkserver._server._process
            assert server is not None
            old_pid = server.pid
            os.kill(old_pid, signal.SIGKILL)
            result = pending.result(timeout=20)  # the caller is not stuck
            assert _wait_gone(marker, 5) == [], "the run outlived the spawn server"
            assert result.status is Status.SETUP_FAILED, result
        finally:
            _kill_all(_processes_with(marker))
        after = pool.submit(box.run, ["true"]).result(timeout=60)
    assert after.status is Status.OK, after
    assert forkserver._server._process.pid != old_pid  # type: ignore[union-attr]
    assert _stale(old_pid) == []
    # The box's next run is being prepared by the new server. No leak check waits here for
    # it to end, so wait for it: else it ends during the next test, whose check sees it go.
    box.close()
    new_server = psutil.Process(forkserver._server._process.pid)  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while new_server.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert new_server.children() == []


# ------------------------------------------------------------------ machine-level faults


def in_private_mounts(
    setup: str, *cli_args: str, env: dict[str, str] | None = None, after: str = ""
) -> tuple[int, str, str]:
    """Run `setup` (shell, as root), the CLI, then `after`, in a private mount namespace of
    a child: the faults made there are real for the CLI and invisible to the host. Returns
    the CLI's exit code, stdout and stderr (and whatever `after` prints there)."""
    command = shlex.join([*CLI, *cli_args])
    script = f'set -e\n{setup}\nset +e\n{command}\necho "rc=$?" >&2\n{after}\n'
    environment = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        cwd=REPO,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 0, done
    code = int(done.stderr.decode().rsplit("rc=", 1)[1].split()[0])
    return code, done.stdout.decode(), done.stderr.decode()


@pytest.fixture
def full_dir(tmp_path: Path) -> Path:
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    target = Path("/tmp") / f"fault-full-{uuid.uuid4().hex}"
    target.mkdir()
    yield target
    target.rmdir()


FILL = """
for d in /tmp /var/tmp; do mount -o bind,ro "$d" "$d"; done
mount -t tmpfs -o size=64k,nr_inodes=16 none {full}
i=0; while touch {full}/f$i 2>/dev/null; do i=$((i+1)); done
head -c 1000000 /dev/zero > {full}/f0 2>/dev/null || true
cd {full}
"""


@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["plain", "json"])
def test_full_disk_fails_cleanly(full_dir: Path, json_flag: tuple[str, ...]) -> None:
    """The disk holding the temp dirs is full (blocks and inodes); /tmp and /var/tmp, the
    fallbacks, are read-only: the run cannot make its run dir anywhere."""
    code, out, err = in_private_mounts(
        FILL.format(full=full_dir), *json_flag, "--", "echo", "hi", env={"TMPDIR": str(full_dir)}
    )
    assert code == 125, (code, out, err)
    assert "hi" not in out
    assert "Traceback" not in err, err
    message = json.loads(out)["error"] if json_flag else err
    assert any(word in message for word in ("temporary", "ENOSPC", "space")), message


def test_full_disk_leaves_nothing(full_dir: Path) -> None:
    """Whatever the message, a full disk leaves no run dir, cgroup or process behind: the
    tmpfs holds only the filler afterwards."""
    code, _, err = in_private_mounts(
        FILL.format(full=full_dir),
        "--",
        "echo",
        "hi",
        env={"TMPDIR": str(full_dir)},
        after=f"(echo listing; ls -A {full_dir}) >&2",
    )
    assert code == 125, err
    left = err.rsplit("listing", 1)[1].split()
    assert left and all(name.startswith("f") for name in left), left


CGROUP_FAULTS = {
    # an empty tmpfs over the whole cgroup tree: the hierarchies are there but hidden
    "hidden": "mount -t tmpfs none /sys/fs/cgroup",
    # every cgroup filesystem unmounted
    "unmounted": "for m in $(awk '$9 ~ /^cgroup/ {print $5}' /proc/self/mountinfo | sort -r); "
    'do umount -l "$m"; done',
    # every cgroup filesystem read-only
    "read-only": "for m in $(awk '$9 ~ /^cgroup/ {print $5}' /proc/self/mountinfo); "
    'do mount -o remount,ro,bind "$m"; done',
}


@pytest.mark.parametrize("fault", sorted(CGROUP_FAULTS))
def test_no_cgroup_fails_cleanly_naming_cgroups(fault: str) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    code, out, err = in_private_mounts(CGROUP_FAULTS[fault], "--", "echo", "hi")
    assert code == 125, (code, out, err)
    assert "hi" not in out and "Traceback" not in err, err
    assert "cgroup" in err.lower(), err
    code, out, err = in_private_mounts(CGROUP_FAULTS[fault], "--json", "--", "echo", "hi")
    assert code == 125, (code, out, err)
    result = json.loads(out)
    assert result["status"] == "setup_failed" and "cgroup" in result["error"].lower(), result


def test_no_cgroup_with_best_effort_runs_with_warnings(tmp_path: Path) -> None:
    """`cgroups = "best_effort"` is the documented way to run without cgroups: the run
    happens, and the Result says which limits are weaker."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    policy = tmp_path / "best-effort.toml"
    policy.write_text('name = "best-effort"\n[limits]\ncgroups = "best_effort"\n')
    code, out, err = in_private_mounts(
        CGROUP_FAULTS["unmounted"], "--json", "--policy", str(policy), "--", "echo", "hi"
    )
    assert code == 0, (code, out, err)
    result = json.loads(out)
    assert result["status"] == "ok" and result["stdout"] == "hi\n", result
    assert any("cgroup" in warning for warning in result["warnings"]), result


# ------------------------------------------------------------------ the workload's own stdio


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(Policy.load("default").override(timeout=10)) as sandbox:
        yield sandbox


def test_workload_closes_stdout_and_stderr_early(box: Sandbox) -> None:
    script = "echo before; echo err >&2; exec 1>&- 2>&-; sleep 0.3; exit 4"
    result = box.run(["sh", "-c", script])
    assert result.status is Status.NONZERO_EXIT and result.exit_code == 4, result
    assert (result.stdout, result.stderr) == ("before\n", "err\n")
    assert result.wall_time < 5


def test_workload_never_reads_a_big_stdin(box: Sandbox) -> None:
    for argv in (["sleep", "0.2"], ["true"], ["head", "-c", "10"]):
        started = time.monotonic()
        result = box.run(argv, stdin=b"x" * (32 << 20))
        assert result.status is Status.OK, (argv, result)
        assert time.monotonic() - started < 5, argv


def test_workload_that_never_reads_stdin_nor_ends_times_out(box: Sandbox) -> None:
    quick = Sandbox(box.policy.override(timeout=1))
    result = quick.run(["sleep", "100"], stdin=b"x" * (32 << 20))
    assert result.status is Status.TIMEOUT and result.wall_time < 5, result


def test_cli_with_a_big_stdin_the_workload_never_reads() -> None:
    done = subprocess.run(
        [*CLI, "--", "sh", "-c", "echo done"],
        input=b"x" * (32 << 20),
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, b"done\n"), done


def test_cli_whose_reader_goes_away_early() -> None:
    """`sandbox run -- big-output | head -c 10`: the reader closes the pipe; the CLI must not
    hang or crash, and the run still ends with the program's own status."""
    reader_r, reader_w = os.pipe()
    cli = subprocess.Popen(
        [*CLI, "--", "sh", "-c", "head -c 5000000 /dev/zero; echo done >&2"],
        stdout=reader_w,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    os.close(reader_w)
    os.read(reader_r, 10)
    os.close(reader_r)
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, (cli.returncode, err)
    assert b"Traceback" not in err and b"done" in err, err

"""Every process of a run ends with it, whatever it does; the run dies with its supervisor;
no fd and no variable of the host reaches the workload."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil

from stockade import Sandbox, Status


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


ESCAPER = """
import os, signal, sys, time
marker = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        os.execvp("sh", ["sh", "-c", f"sleep 1000; : {marker}"])
    os._exit(0)
if os.fork() == 0:
    os.kill(os.getpid(), signal.SIGSTOP)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("started", flush=True)
time.sleep(1000)
"""


def test_timeout_kills_the_whole_tree(box: Sandbox) -> None:
    marker = f"stockade-{uuid.uuid4().hex}"
    quick = Sandbox(box.policy.override(timeout=1.5))
    result = quick.run(["python3", "-c", ESCAPER, marker])
    assert result.status is Status.TIMEOUT, result
    assert result.stdout.strip() == "started"
    assert 1.4 < result.wall_time < 10
    assert _processes_with(marker) == []


def test_background_processes_end_with_the_workload(box: Sandbox) -> None:
    marker = f"stockade-{uuid.uuid4().hex}"
    result = box.run(["sh", "-c", f"(setsid sh -c 'sleep 1000; : {marker}' &) ; echo done"])
    assert result.status is Status.OK and result.stdout.strip() == "done"
    assert _processes_with(marker) == []


def test_the_run_dies_with_a_killed_supervisor(tmp_path) -> None:
    marker = f"stockade-{uuid.uuid4().hex}"
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "run",
            "--timeout",
            "60",
            "--",
            "sh",
            "-c",
            f"echo up; sleep 1000; : {marker}",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert cli.stdout is not None and cli.stdout.readline() == b"up\n"
        assert _processes_with(marker), "the workload should be running"
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        deadline = time.monotonic() + 10
        while _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_with(marker) == []
    finally:
        cli.kill()
        cli.wait()
    # The supervisor cleaned up after itself when its parent died (no stale dirs/cgroups):
    # the autouse leak check verifies it.
    time.sleep(0.5)


def test_host_environment_is_absent(box: Sandbox, monkeypatch) -> None:
    secret = uuid.uuid4().hex
    monkeypatch.setenv("STOCKADE_TEST_SECRET", secret)
    script = "cat /proc/self/environ /proc/1/environ /proc/1/cmdline 2>/dev/null; env"
    result = box.run(["sh", "-c", script])
    assert secret not in result.stdout
    names = {line.split("=", 1)[0] for line in result.stdout.splitlines() if "=" in line}
    assert names <= {"PATH", "HOME", "TMPDIR", "LANG", "PWD", "SHLVL", "_"}, names


def test_env_flag_is_set(box: Sandbox) -> None:
    result = box.run(["sh", "-c", "echo $GREETING"], env={"GREETING": "hello"})
    assert result.stdout.strip() == "hello"


def test_inherited_fds_are_closed(box: Sandbox, tmp_path) -> None:
    leaked = os.open(tmp_path / "leak", os.O_RDWR | os.O_CREAT)
    os.set_inheritable(leaked, True)
    try:
        result = box.run(["python3", "-c", "import os; print(sorted(os.listdir('/proc/self/fd')))"])
    finally:
        os.close(leaked)
    assert result.stdout.strip() == "['0', '1', '2', '3']", result  # 3: the listing itself


def test_fork_bomb_is_stopped(box: Sandbox) -> None:
    bomb = Sandbox(box.policy.override(timeout=5, pids=32))
    result = bomb.run(["sh", "-c", "b() { b | b & }; b; sleep 2; echo alive"])
    assert result.status in (Status.OK, Status.NONZERO_EXIT, Status.TIMEOUT)
    assert "fork" in result.stderr.lower() or "resource" in result.stderr.lower(), result
    assert box.run(["true"]).status is Status.OK  # the machine is still responsive


def test_memory_hog_ends_as_memory_limit(box: Sandbox) -> None:
    small = Sandbox(box.policy.override(memory="64M"))
    result = small.run(["python3", "-c", "x = bytearray(256 << 20); print('survived')"])
    assert result.status is Status.MEMORY_LIMIT, result
    assert "survived" not in result.stdout
    fits = small.run(["python3", "-c", "x = bytearray(16 << 20); print('fits')"])
    assert fits.stdout.strip() == "fits"


def test_cpu_time_limit(box: Sandbox) -> None:
    spin = Sandbox(box.policy.override(cpu_time=1, timeout=20))
    result = spin.run(["python3", "-c", "while True: pass"])
    assert result.status is Status.TIMEOUT, result
    assert result.cpu_time >= 0.9


def test_file_size_limit(box: Sandbox) -> None:
    small = Sandbox(box.policy.override(file_size="1M"))
    result = small.run(["sh", "-c", "head -c 2000000 /dev/zero > big; wc -c < big"])
    assert "File size limit exceeded" in result.stderr, result
    assert result.stdout.strip() == str(1 << 20)


def test_open_files_limit(box: Sandbox) -> None:
    few = Sandbox(box.policy.override(open_files=16))
    script = "fs=[]\nwhile True: fs.append(open('/dev/null'))"
    result = few.run(["python3", "-c", script])
    assert "Too many open files" in result.stderr, result


def test_output_flood_is_cut(box: Sandbox) -> None:
    small = Sandbox(box.policy.override(output_limit="64K"))
    result = small.run(["sh", "-c", "head -c 50000000 /dev/zero; head -c 50000000 /dev/zero >&2"])
    assert result.status is Status.OK, result
    assert len(result.stdout_bytes) == 64 << 10 and result.stdout_truncated
    assert len(result.stderr_bytes) == 64 << 10 and result.stderr_truncated


def test_concurrent_runs_share_nothing(box: Sandbox) -> None:
    from concurrent.futures import ThreadPoolExecutor

    script = (
        "import os, time, sys; open('/workspace/me', 'w').write(sys.argv[1]);"
        "open('/dev/shm/me', 'w').write(sys.argv[1]); time.sleep(0.5);"
        "print(open('/workspace/me').read(), open('/dev/shm/me').read(), os.listdir('/tmp'))"
    )
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: box.run(["python3", "-c", script, str(i)]), range(4)))
    for index, result in enumerate(results):
        assert result.stdout.split() == [str(index), str(index), "[]"], result

"""`sandbox batch`: JSON lines in and out, bad lines as results of their own, the command's
own errors as 125, and a real Ctrl-C (SIGINT to the command's process group) that keeps what
is done, which `--resume` then completes: every job once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockade.batch.jobs import rejected

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")

SANDBOX = [sys.executable, "-m", "stockade"]


def batch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SANDBOX, "batch", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_line_gets_its_result_line_and_bad_lines_their_own(tmp_path: Path) -> None:
    (tmp_path / "jobs.jsonl").write_text(
        "\n".join(
            [
                '{"id": "ok", "code": "print(6 * 7)"}',
                '{"id": "fail", "code": "import sys; sys.exit(3)", "timeout": 5}',
                "{not json",
                '{"id": "sh", "code": "echo $0", "language": "sh"}',
                '{"id": "cmd", "argv": ["cat", "in.txt"], "files": {"in.txt": "hello"}}',
                '{"id": "ok", "code": "print(\'the same id again\')"}',
                '["a", "list"]',
                '{"id": "bad-limit", "code": "1", "memory": "lots"}',
                "",
            ]
        )
        + "\n"
    )
    done = batch("jobs.jsonl", "--out", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = lines(tmp_path / "out.jsonl")
    assert len(out) == 8  # the empty line is no job
    by_id = {line["id"]: line for line in out if "line" not in line}
    assert by_id["ok"]["status"] == "ok" and by_id["ok"]["stdout"] == "42\n"
    assert by_id["fail"]["status"] == "nonzero_exit" and by_id["fail"]["exit_code"] == 3
    assert by_id["sh"]["stdout"] == "main.sh\n" and by_id["cmd"]["stdout"] == "hello"
    assert by_id["bad-limit"]["status"] == "setup_failed"
    assert by_id["bad-limit"]["error"].startswith("memory: ")
    # the id, then the Result's own JSON form (`--json`'s)
    assert list(by_id["ok"]) == ["id", *rejected("x").to_dict()]
    refused = {line["line"]: line for line in out if "line" in line}
    assert sorted(refused) == [3, 6, 7]
    assert all(line["status"] == "setup_failed" for line in refused.values())
    assert refused[3]["id"] is None and refused[3]["error"].startswith("line 3: JOBS: not a JSON")
    assert refused[6]["id"] == "ok" and "also the id of line 1" in refused[6]["error"]
    assert refused[7]["error"] == "line 7: JOBS: expected a JSON object, got list"
    assert "8 jobs (1 nonzero_exit, 3 ok, 4 setup_failed)" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl", "--out", "o.jsonl"], "JOBS: cannot read 'missing.jsonl'"),
        (["jobs.jsonl", "--out", "o.jsonl", "--concurrency", "0"], "--concurrency: expected"),
        (["jobs.jsonl", "--out", "exists.jsonl"], "--out: 'exists.jsonl' exists: --resume"),
        (["jobs.jsonl", "--out", "o.jsonl", "--timeout", "nope"], "--timeout: expected a"),
        (["jobs.jsonl"], "the following arguments are required: --out"),
    ],
)
def test_the_commands_own_errors_exit_125(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "jobs.jsonl").write_text('{"id": 1, "code": "print(1)"}\n')
    (tmp_path / "exists.jsonl").write_text("")
    done = batch(*args, cwd=tmp_path)
    assert done.returncode == 125, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_ctrl_c_keeps_what_is_done_and_resume_runs_the_rest_once(tmp_path: Path) -> None:
    count = 40
    code = "import time; time.sleep(0.3); print({})"
    jobs = [{"id": f"j{n}", "code": code.format(n)} for n in range(count)]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    out = tmp_path / "out.jsonl"
    command = [*SANDBOX, "batch", "jobs.jsonl", "--out", "out.jsonl", "--concurrency", "2"]
    process = subprocess.Popen(
        command, cwd=tmp_path, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while (not out.exists() or len(out.read_text().splitlines()) < 4) and process.poll() is None:
        assert time.monotonic() < deadline, "no results came"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "sandbox: interrupted" in stderr and "Traceback" not in stderr
    first = lines(out)  # every line complete
    assert 4 <= len(first) < count
    assert all(line["status"] == "ok" for line in first)

    done = batch("jobs.jsonl", "--out", "out.jsonl", "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    every = lines(out)
    ids = [line["id"] for line in every]
    assert sorted(ids) == sorted(job["id"] for job in jobs)  # each once: none lost, none twice
    assert all(line["stdout"] == f"{line['id'][1:]}\n" for line in every)
    assert f"{count - len(first)} jobs ({count - len(first)} ok)" in done.stderr


def test_resume_drops_a_line_cut_short_and_runs_its_job_again(tmp_path: Path) -> None:
    (tmp_path / "jobs.jsonl").write_text(
        '{"id": "a", "code": "print(1)"}\n{"id": "b", "code": "print(2)"}\n'
    )
    assert batch("jobs.jsonl", "--out", "out.jsonl", cwd=tmp_path).returncode == 0
    whole = (tmp_path / "out.jsonl").read_text()
    (tmp_path / "out.jsonl").write_text(whole[: len(whole.splitlines()[0]) + 1 + 20])
    done = batch("jobs.jsonl", "--out", "out.jsonl", "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(line["id"] for line in lines(tmp_path / "out.jsonl")) == ["a", "b"]
    (tmp_path / "out.jsonl").write_text("garbage\n")
    done = batch("jobs.jsonl", "--out", "out.jsonl", "--resume", cwd=tmp_path)
    assert done.returncode == 125 and "line 1 is not a result" in done.stderr


def test_a_progress_bar_on_a_terminal_and_none_elsewhere(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    (tmp_path / "jobs.jsonl").write_text(
        "".join(f'{{"id": {n}, "code": "raise SystemExit({n % 2})"}}\n' for n in range(6))
    )
    plain = batch("jobs.jsonl", "--out", "plain.jsonl", cwd=tmp_path)
    assert plain.returncode == 0 and "|" not in plain.stderr and "\r" not in plain.stderr

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen(
        [*SANDBOX, "batch", "jobs.jsonl", "--out", "tty.jsonl"], cwd=tmp_path, stderr=terminal
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the command ended, and with it the terminal's last writer
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    bars = [line for line in shown.decode().split("\r") if "|" in line]
    assert "100%" in bars[-1] and "6/6" in bars[-1] and "not_ok=3" in bars[-1], bars

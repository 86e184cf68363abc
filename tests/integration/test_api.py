"""The Python API contract: Sandbox, run / run_code / arun, files, stdin, threads, asyncio."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from stockade import Policy, PolicyError, Sandbox, Status


def test_run_with_files_and_stdin(box: Sandbox) -> None:
    result = box.run(
        ["sh", "-c", "cat data.csv; cat"], stdin=b"from stdin", files={"data.csv": b"a,b\n"}
    )
    assert result.status is Status.OK
    assert result.stdout == "a,b\nfrom stdin"


@pytest.mark.parametrize(
    "language,code,expected",
    [
        ("python", "import sys; print(sys.version_info[0])", "3\n"),
        ("bash", "echo ${BASH_VERSION%%.*}", None),
        ("sh", "echo sh", "sh\n"),
    ],
)
def test_run_code(box: Sandbox, language: str, code: str, expected: str | None) -> None:
    result = box.run_code(code, language=language)
    assert result.status is Status.OK, result
    assert expected is None or result.stdout == expected


def test_unknown_language(box: Sandbox) -> None:
    with pytest.raises(PolicyError, match="language"):
        box.run_code("print(1)", language="cobol")


@pytest.mark.parametrize(
    "name", ["../escape", "/etc/passwd", "", ".", "a/../../b", "a\0b", 7, "sub/"]
)
def test_files_must_stay_in_the_workspace(box: Sandbox, name: str) -> None:
    with pytest.raises(PolicyError, match="files"):
        box.run(["true"], files={name: b"x"})


def test_a_file_cannot_also_be_a_directory(box: Sandbox) -> None:
    with pytest.raises(PolicyError, match="'a' is a file"):
        box.run(["true"], files={"a": "x", "a/b": "y"})
    assert box.run(["cat", "a/b", "a/c"], files={"a/b": "x", "a/c": "y"}).stdout == "xy"


def test_two_names_of_one_file_are_refused(box: Sandbox) -> None:
    with pytest.raises(PolicyError, match=r"'\./a': another name given is the same file"):
        box.run(["true"], files={"a": "x", "./a": "y"})  # one would be lost without a word


@pytest.mark.parametrize("pool", [0, 1])
@pytest.mark.parametrize("name", ["main.py", "./main.py"])
def test_a_file_cannot_take_the_programs_name(pool: int, name: str) -> None:
    refused = pytest.raises(PolicyError, match=r"'main\.py' is the program's own name")
    with Sandbox(Policy.load("default"), pool=pool) as box, refused:
        box.run_code("print(1)", files={name: "lost"})


@pytest.mark.parametrize("content", [5, None, ["x"]])  # bytes(5) would be five NUL bytes
def test_file_contents_are_str_or_bytes(box: Sandbox, content: object) -> None:
    with pytest.raises(PolicyError, match="files"):
        box.run(["true"], files={"a": content})  # type: ignore[dict-item]
    with pytest.raises(PolicyError, match="files"):
        box.run(["true"], files=["a"])  # type: ignore[arg-type]


@pytest.mark.parametrize("env", [{"A": 1}, {"A": None}, {1: "x"}])
def test_env_names_and_values_are_strings(box: Sandbox, env: object) -> None:
    with pytest.raises(PolicyError, match="env"):
        box.run(["true"], env=env)  # type: ignore[arg-type]


@pytest.mark.parametrize("stdin", [False, True, "text", 1.5, -1])
def test_stdin_is_bytes_an_fd_or_none(box: Sandbox, stdin: object) -> None:
    # False is 0 to Python: taken as an fd, it would hand the caller's own stdin over
    with pytest.raises(PolicyError, match="stdin"):
        box.run(["cat"], stdin=stdin)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="stdin"):
        box.run_code("print(1)", stdin=stdin)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="stdin"):
        box.start(["cat"], stdin=stdin).close()  # type: ignore[arg-type]


def test_a_dict_is_not_a_policy() -> None:
    with pytest.raises(PolicyError, match=r"Policy\.from_dict"):
        Sandbox({"limits": {"timeout": 1}})  # type: ignore[arg-type]


def test_raw_output_is_kept(box: Sandbox) -> None:
    result = box.run(["printf", "\\377\\000\\n"])
    assert result.stdout_bytes == b"\xff\x00\n"
    assert result.stdout == "\ufffd\x00\n"


@pytest.mark.parametrize(
    "argv", [[], "echo hi", ["echo", "a\0b"], ["true", *["x" * 65536] * 20], [""]]
)
def test_bad_argv(box: Sandbox, argv: object) -> None:
    with pytest.raises(PolicyError, match="argv"):
        box.run(argv)  # type: ignore[arg-type]


def test_policy_by_name() -> None:
    assert Sandbox("strict").policy.name == "strict"
    assert Sandbox().policy == Policy.load("default")


def test_shared_between_threads(box: Sandbox) -> None:
    """Eight threads share one Sandbox; with threads alive, runs go through the spawn server."""
    assert threading.active_count() >= 1
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: box.run(["sh", "-c", f"echo {i}"]), range(16)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(16)]


def test_asyncio_tasks(box: Sandbox) -> None:
    async def main() -> list[str]:
        runs = [box.arun(["sh", "-c", f"sleep 0.2; echo {i}"]) for i in range(6)]
        runs.append(box.arun_code("print('code')"))
        return [r.stdout for r in await asyncio.gather(*runs)]

    assert asyncio.run(main()) == [f"{i}\n" for i in range(6)] + ["code\n"]


def test_result_json_matches_the_contract(box: Sandbox) -> None:
    result = box.run(["sh", "-c", "echo out; exit 2"])
    data = result.to_dict()
    assert data["status"] == "nonzero_exit" and data["exit_code"] == 2
    assert data["stdout"] == "out\n" and data["error"] is None
    assert data["cpu_time"] >= 0 and data["peak_memory"] > 0


def test_stdin_not_read_does_not_block(box: Sandbox) -> None:
    result = box.run(["true"], stdin=b"x" * (8 << 20))
    assert result.status is Status.OK


DROPPED = """
import gc, os, signal, psutil
from stockade import Sandbox

def fds():
    return len(os.listdir("/proc/self/fd"))

def ours():
    return [c.status() for c in psutil.Process().children()]

box = Sandbox(prefork=False)
base = fds()
running = box.start(["sleep", "30"])
running.started()
del running  # unclosed, as a Popen may be
session = box.session()
session.run("x = 1")
del session
gc.collect()
assert fds() == base, ("fds", fds() - base)
signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
signal.setitimer(signal.ITIMER_REAL, 0.5)
try:
    box.run(["sleep", "30"])
except KeyboardInterrupt:
    pass
assert fds() == base, ("fds after the interrupt", fds() - base)
for _ in range(100):  # the dropped runs' supervisors end by themselves; a start reaps them
    box.run(["true"])
    if not ours():
        break
assert not ours(), ours()
print("clean")
"""


def test_dropped_and_interrupted_runs_free_their_fds_and_are_reaped() -> None:
    # In a process of its own, single-threaded as a script is: supervisors are its children.
    done = subprocess.run(
        [sys.executable, "-c", DROPPED], capture_output=True, text=True, timeout=120
    )
    assert done.stdout == "clean\n", done.stderr


def _sleepers(seconds: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if seconds in (p.info["cmdline"] or [])]


@pytest.mark.parametrize("pooled", [False, True])
def test_cancelling_an_arun_kills_its_run(pooled: bool) -> None:
    async def cancel_after_a_second(box: Sandbox) -> None:
        if pooled:
            call = box.arun_code("import subprocess; subprocess.run(['sleep', '37'])")
        else:
            call = box.arun(["sleep", "37"])
        task = asyncio.create_task(call)
        await asyncio.sleep(1.0)
        assert _sleepers("37"), "the run did not start"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with Sandbox(Policy.load("default").override(timeout=60), pool=int(pooled)) as box:
        began = time.monotonic()
        asyncio.run(cancel_after_a_second(box))  # returns once the run's thread has ended
        assert time.monotonic() - began < 20
        assert not _sleepers("37")


def test_close_leaves_alone_an_fd_the_caller_closed_and_gave_up(box: Sandbox) -> None:
    running = box.start(["cat"])
    os.close(running.stdin)  # EOF for cat: the only way to send it
    number, running.stdin = running.stdin, None
    reused = os.open(os.devnull, os.O_RDONLY)
    os.dup2(reused, number)  # the number now belongs to another file, as the next open's would
    try:
        assert running.wait().ok
        running.close()
        os.fstat(number)  # still open: close() did not take it
    finally:
        os.close(number)
        os.close(reused)


def test_a_call_takes_its_own_limits_as_subprocess_run_takes_a_timeout() -> None:
    with Sandbox() as box:
        slow = box.run(["sleep", "5"], timeout=0.5)
        assert slow.status is Status.TIMEOUT and slow.wall_time < 3
        assert box.run_code("import time; time.sleep(5)", timeout="500ms").status is Status.TIMEOUT
        spin = box.run_code("while True: pass", cpu_time=0.3, timeout=5)
        assert spin.status is Status.TIMEOUT and spin.wall_time < 3
        hog = "b = bytearray(100 << 20); b[::4096] = b'x' * len(b[::4096])"
        assert box.run_code(hog, memory="32M").status is Status.MEMORY_LIMIT
        assert box.run_code(hog).status is Status.OK  # the policy's 256M again
        forks = box.run(["sh", "-c", "for i in 1 2 3 4 5 6; do sleep 1 & done; wait"], pids=4)
        assert forks.status is Status.NONZERO_EXIT or "fork" in forks.stderr.lower(), forks
        cut = box.run(["seq", "1000"], output_limit=6)
        assert (cut.stdout, cut.stdout_truncated) == ("1\n2\n3\n", True)
        assert asyncio.run(box.arun(["sleep", "5"], timeout=0.3)).status is Status.TIMEOUT
        late = asyncio.run(box.arun_code("import time; time.sleep(5)", timeout=0.3))
        assert late.status is Status.TIMEOUT


def test_a_pooled_call_takes_its_own_limits() -> None:
    with Sandbox(pool=1) as box:
        assert box.run_code("import time; time.sleep(5)", timeout=0.5).status is Status.TIMEOUT
        cut = box.run_code("print('x' * 100)", output_limit=10)
        assert (cut.stdout, cut.stdout_truncated) == ("x" * 10, True)
        hog = "b = bytearray(100 << 20); b[::4096] = b'x' * len(b[::4096])"
        assert box.run_code(hog, memory="32M").status is Status.MEMORY_LIMIT  # ran fresh
        assert box.run_code("print(1)").stdout == "1\n"


@pytest.mark.parametrize(
    ("limit", "value"),
    [("timeout", 0), ("timeout", "soon"), ("cpu_time", -1), ("memory", "256MB"), ("memory", 1),
     ("pids", 1), ("output_limit", "lots")],
)  # fmt: skip
def test_a_call_limit_is_validated_as_the_policy_s(limit: str, value: object) -> None:
    box = Sandbox(prefork=False)
    for call in (lambda: box.run(["true"], **{limit: value}),
                 lambda: box.run_code("pass", **{limit: value})):  # fmt: skip
        with pytest.raises(PolicyError) as error:
            call()
        assert error.value.field == limit

"""Stateful sessions with real sandboxes: state kept across calls, a timed-out call interrupted
without losing the session, a hard kill with a clear error when the call will not stop,
threads and asyncio, and nothing left behind once closed (the autouse leak check)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from stockade import Policy, PolicyError, Sandbox, SessionError, Status


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(Policy.load("default").override(timeout=5, memory="128M")) as sandbox:
        yield sandbox


@pytest.fixture
def session(box: Sandbox) -> Iterator[object]:
    with box.session() as s:
        yield s


def test_state_is_kept_between_calls(session) -> None:  # type: ignore[no-untyped-def]
    assert session.run("x = 20\ndef double(v):\n    return v * 2").status is Status.OK
    assert session.run("print(double(x) + 2)").stdout == "42\n"
    assert session.run("import math\nmath.floor(2.5)").stdout == "2\n"  # a notebook's display
    assert session.run("y = x").stdout == ""
    open_file = session.run("open('notes.txt', 'w').write('kept')\nprint(open('notes.txt').read())")
    assert open_file.stdout == "kept\n"
    own = "os.getuid() in range(0x7000_0000, 0x7001_0000)"  # the default process.uid_range
    assert session.run(f"import os; print(os.getcwd(), {own})").stdout == "/workspace True\n"


def test_errors_and_exits_do_not_end_the_session(session) -> None:  # type: ignore[no-untyped-def]
    session.run("x = 1")
    failed = session.run("1 / 0")
    assert failed.status is Status.NONZERO_EXIT and failed.exit_code == 1
    assert failed.stderr.startswith('Traceback (most recent call last):\n  File "<cell-2>"')
    assert failed.stderr.endswith("ZeroDivisionError: division by zero\n")
    assert "<string>" not in failed.stderr
    exited = session.run("import sys; sys.exit(7)")
    assert exited.status is Status.NONZERO_EXIT and exited.exit_code == 7
    assert session.run("def (").exit_code == 1
    assert session.run("print(x)").stdout == "1\n"


@pytest.mark.parametrize(
    "code", ["import time\ntime.sleep(30)", "while True:\n    pass"], ids=["blocked", "busy"]
)
def test_a_timed_out_call_is_interrupted_and_the_session_survives(
    session,  # type: ignore[no-untyped-def]
    code: str,
) -> None:
    session.run("kept = 'yes'")
    started = time.monotonic()
    result = session.run(code, timeout=0.5)
    assert time.monotonic() - started < 3
    assert result.status is Status.TIMEOUT
    assert result.stderr.endswith("KeyboardInterrupt\n") and "<string>" not in result.stderr
    assert session.run("print(kept)").stdout == "yes\n"


def test_a_call_that_will_not_stop_is_killed_with_a_clear_error(box: Sandbox) -> None:
    with box.session() as session:
        session.run("x = 1")
        stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        stubborn += "time.sleep(30)"
        started = time.monotonic()
        with pytest.raises(SessionError, match="did not stop at the interrupt") as raised:
            session.run(stubborn, timeout=0.5)
        assert time.monotonic() - started < 5
        assert raised.value.result is not None and raised.value.result.status is Status.TIMEOUT
        assert not session.alive
        with pytest.raises(SessionError, match="state is lost"):
            session.run("print(x)")


def test_the_interpreter_dying_ends_the_session(box: Sandbox) -> None:
    with box.session() as session, pytest.raises(SessionError, match="exit 3") as ended:
        session.run("import os; os._exit(3)")
    exited = ended.value.result  # an exit of its own, not a kill
    assert exited is not None and (exited.status, exited.exit_code) == ("nonzero_exit", 3)
    with box.session() as session:
        with pytest.raises(SessionError, match="memory") as raised:
            session.run("hog = bytearray(300 << 20)")
        assert raised.value.result.status is Status.MEMORY_LIMIT


def test_a_call_interrupted_in_the_caller_ends_the_session(box: Sandbox) -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with box.session() as session:
            session.run("x = 5")
            signal.setitimer(signal.ITIMER_REAL, 0.5)  # Ctrl-C, as it were, during the call
            with pytest.raises(KeyboardInterrupt):
                session.run("import time; time.sleep(2); print('slept')")
            assert not session.alive
            # its answer, still to come, must never be taken for a later call's
            with pytest.raises(SessionError, match="interrupted in the caller"):
                session.run("print(x)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_call_brings_its_files(session) -> None:  # type: ignore[no-untyped-def]
    files = {"data.txt": "one", "pkg/mod.py": "value = 3"}
    first = session.run(
        "import os; os.chdir('/tmp'); print(open('/workspace/data.txt').read())", files=files
    )
    assert first.stdout == "one\n"  # written into /workspace, whatever the directory is now
    replaced = session.run("print(open('/workspace/data.txt').read())", files={"data.txt": b"two"})
    assert replaced.stdout == "two\n"  # a later call's file replaces an earlier one's
    assert (
        session.run(
            "import sys; sys.path.insert(0, '/workspace')\nfrom pkg.mod import value\nvalue"
        ).stdout
        == "3\n"
    )
    with pytest.raises(PolicyError, match="files"):
        session.run("1", files={"../escape": "x"})
    blocked = session.run("1", files={"pkg": "a file where a directory is"})
    assert blocked.status is Status.NONZERO_EXIT and "IsADirectoryError" in blocked.stderr
    assert session.run("return 5").status is Status.NONZERO_EXIT  # no frame of the call's own
    assert session.run("print('still here')").stdout == "still here\n"


def test_nothing_a_call_leaves_running_escapes_its_limits() -> None:
    policy = Policy.load("default").override(cpu_time=1, timeout=5)
    with Sandbox(policy) as box, box.session() as session:
        daemon = "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork():\n"
        daemon += "        os._exit(0)\n    while True:\n        pass"
        assert session.run(daemon).status is Status.OK
        # a process the call started (a double-forked daemon too) ended with the call
        pids = "import os; print(sum(p.isdigit() for p in os.listdir('/proc')))"
        assert session.run(pids).stdout == "2\n"  # the init and the interpreter
        later = "import os, threading, time\ndef fork_later():\n    time.sleep(0.3)\n"
        later += "    if os.fork() == 0:\n        while True:\n            pass\n"
        session.run(later + "threading.Thread(target=fork_later, daemon=True).start()")
        time.sleep(2)  # the thread forked after its call had returned
        assert session.run(pids).stdout == "2\n"
        spin = "import threading\ndef spin():\n    while True:\n        pass\n"
        session.run(spin + "threading.Thread(target=spin, daemon=True).start()")
        time.sleep(2.5)  # a thread it left used up the CPU time meanwhile
        with pytest.raises(SessionError, match="CPU time between calls"):
            session.run("1")


def test_threads_and_asyncio(session) -> None:  # type: ignore[no-untyped-def]
    session.run("calls = []")
    with ThreadPoolExecutor(4) as threads:
        list(threads.map(lambda i: session.run(f"calls.append({i})"), range(12)))
    assert session.run("print(sorted(calls) == list(range(12)))").stdout == "True\n"

    async def main() -> list[str]:
        calls = [session.arun(f"len(calls) + {i}") for i in range(4)]
        return [r.stdout for r in await asyncio.gather(*calls)]

    assert asyncio.run(main()) == ["12\n", "13\n", "14\n", "15\n"]


def test_sessions_are_isolated_from_each_other(box: Sandbox) -> None:
    with box.session() as one, box.session() as two:
        one.run("secret = 1\nopen('/tmp/secret', 'w').write('x')")
        assert two.run("print('secret' in globals())").stdout == "False\n"
        assert two.run("import os; print(os.listdir('/tmp'))").stdout == "[]\n"


def test_closing(box: Sandbox) -> None:
    session = box.session()
    session.close()
    session.close()
    with pytest.raises(SessionError, match="closed"):
        session.run("1")
    with pytest.raises(PolicyError, match="language"):
        box.session(language="bash")
    with pytest.raises(PolicyError, match="preload"):  # refused before anything starts
        box.session(preload=["os; import shutil"])


def test_close_from_another_thread_ends_a_running_call(box: Sandbox) -> None:
    session = box.session()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            session.run("import time; time.sleep(30)", timeout=20)
        except SessionError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.0)
    session.close()
    caller.join(10)
    assert not caller.is_alive() and errors and "closed" in str(errors[0])


def test_files_are_read_written_and_listed(session) -> None:  # type: ignore[no-untyped-def]
    made = "import os; os.makedirs('d/e'); open('d/e/f.bin', 'wb').write(bytes(range(256)))"
    assert session.run(made).status is Status.OK
    assert session.read_file("d/e/f.bin") == bytes(range(256))
    assert session.read_file("/workspace/d/e/f.bin") == bytes(range(256))
    session.write_file("new/dir/x.txt", "hello")  # the directories on the way are made
    session.write_file("/tmp/t.bin", b"\0\1")
    assert session.run("print(open('new/dir/x.txt').read())").stdout == "hello\n"
    assert session.read_file("/tmp/t.bin") == b"\0\1"
    session.write_file("new/dir/x.txt", b"again")  # replaced
    assert session.read_file("new/dir/x.txt") == b"again"
    assert session.list_files() == ["d/", "new/"]
    assert session.list_files("d/e") == ["f.bin"]
    assert session.list_files("/tmp") == ["t.bin"]


def test_file_calls_never_follow_a_link(session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host = tmp_path / "host-secret"
    host.write_text("host secret")
    code = (
        "import os\n"
        f"os.symlink({str(host)!r}, 'host')\n"
        "os.symlink('/etc/passwd', 'passwd')\n"  # the sandbox's own, readable from inside
        "os.symlink('/usr', 'usr')\n"
        "os.symlink('/tmp', 'tmp')\n"
        "os.mkfifo('fifo')\n"
    )
    assert session.run(code).status is Status.OK
    for path in ("host", "passwd", "usr/lib/os-release", "tmp/x", "fifo"):
        with pytest.raises(PolicyError) as caught:
            session.read_file(path)
        assert caught.value.field == "path"
    for path in ("passwd", "tmp/x", "usr/x"):
        with pytest.raises(PolicyError):
            session.write_file(path, b"x")
    assert session.run("print(open('/etc/passwd').read().count('sandbox'))").stdout == "1\n"
    assert session.list_files() == ["fifo", "host", "passwd", "tmp", "usr"]  # listed, unfollowed
    assert host.read_text() == "host secret"


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "/etc/passwd", "/workspace/../etc/passwd", "", "/proc/1/environ"]
)
def test_a_path_outside_is_refused_before_asking(session, path: str) -> None:  # type: ignore[no-untyped-def]
    for call in (session.read_file, session.list_files, lambda p: session.write_file(p, b"")):
        with pytest.raises(PolicyError) as caught:
            call(path)
        assert caught.value.field == "path"


def test_file_sizes_are_capped() -> None:
    policy = Policy.load("default").override(collect_size=100, file_size=1000)
    with Sandbox(policy).session() as session:
        session.write_file("big", b"x" * 1000)
        with pytest.raises(PolicyError, match=r"over limits\.file_size"):
            session.write_file("bigger", b"x" * 1001)
        with pytest.raises(PolicyError, match=r"1000 bytes: over limits\.collect_size"):
            session.read_file("big")
        session.write_file("small", b"x" * 100)
        assert session.read_file("small") == b"x" * 100


def test_file_calls_on_a_closed_session_raise(box: Sandbox) -> None:
    session = box.session()
    session.close()
    with pytest.raises(SessionError):
        session.read_file("x")

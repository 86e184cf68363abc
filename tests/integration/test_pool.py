"""Warm pools with real sandboxes: pooled runs behave like fresh ones, nothing carries over
from one run to the next, concurrent runs cannot see each other, the limits hold, the pool
recovers from a dead sandbox, and closing it leaves nothing behind (the autouse leak check)."""

from __future__ import annotations

import asyncio
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from stockade import Policy, PolicyError, Result, Sandbox, SandboxError, Status


def _pool(size: int, **limits: object) -> Sandbox:
    return Sandbox(Policy.load("default").override(**{"timeout": 10, **limits}), pool=size)


@pytest.fixture
def pooled() -> Iterator[Sandbox]:
    with _pool(2) as box:
        yield box


@pytest.fixture
def single() -> Iterator[Sandbox]:
    """One pooled sandbox: consecutive runs are sure to share it."""
    with _pool(1) as box:
        yield box


def _ok(result: Result) -> str:
    assert result.status is Status.OK, result
    return result.stdout


def test_a_pooled_run_is_like_a_fresh_one(pooled: Sandbox) -> None:
    # A uid of the pooled sandbox's own, from the default process.uid_range
    code = (
        "import os, sys; print(os.getcwd(), os.getuid() in range(0x7000_0000, 0x7001_0000), "
        "sys.argv, __name__, __file__)"
    )
    expected = "/workspace True ['main.py'] __main__ /workspace/main.py\n"
    assert _ok(pooled.run_code(code)) == expected
    assert _ok(pooled.run_code("print(open('d/in.txt').read())", files={"d/in.txt": "x"})) == "x\n"
    assert _ok(pooled.run_code("import sys; print(sys.stdin.read())", stdin=b"fed")) == "fed\n"
    env = "import os; print(os.environ['K'], os.environ['HOME'], os.environ['LANG'])"
    assert _ok(pooled.run_code(env, env={"K": "v"})) == "v /workspace C.UTF-8\n"
    failed = pooled.run_code("import sys\nprint('out')\nsys.exit(3)")
    assert (failed.status, failed.exit_code, failed.stdout) == (Status.NONZERO_EXIT, 3, "out\n")
    raised = pooled.run_code("def f():\n    raise ValueError('boom')\nf()")
    assert raised.exit_code == 1
    head = 'Traceback (most recent call last):\n  File "/workspace/main.py"'
    assert raised.stderr.startswith(head)
    assert raised.stderr.endswith("ValueError: boom\n") and "<string>" not in raised.stderr
    assert pooled.run_code("print('x' * 3_000_000)").stdout_truncated
    # Other languages, and run(argv), take fresh sandboxes as always.
    assert _ok(pooled.run_code("echo $0", language="sh")) == "main.sh\n"
    assert _ok(pooled.run(["python3", "-c", "print(2)"])) == "2\n"


LEAVE_EVERYTHING = textwrap.dedent(
    r"""
    import builtins, ctypes, os, subprocess, sys, colorsys
    print(os.getpid())
    for place in ("/workspace", "/tmp", "/dev/shm"):
        os.makedirs(f"{place}/deep/er", exist_ok=True)
        open(f"{place}/deep/er/secret", "w").write("secret")
        os.symlink("/etc/passwd", f"{place}/link")
    os.chmod("/workspace/deep", 0)
    os.chmod("/workspace", 0o777)
    os.setxattr("/workspace", "user.secret", b"secret")
    os.environ["SECRET"] = "1"
    builtins.SECRET = 1
    os.SECRET = 1
    sys.path.append("/secret")
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.shmget(0x5EC, 4096, 0o1600) >= 0
    assert libc.semget(0x5EC, 1, 0o1600) >= 0
    assert libc.msgget(0x5EC, 0o1600) >= 0
    # Still running when the run ends: a session leader that ignores SIGTERM, and an orphan.
    subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 1000"], start_new_session=True)
    os.system("sleep 1000 &")
    """
)

SEE_NOTHING = textwrap.dedent(
    r"""
    import builtins, ctypes, os, sys
    print(os.getpid())
    for place in ("/workspace", "/tmp", "/dev/shm"):
        print(place, sorted(os.listdir(place)))
    st = os.stat("/workspace")
    print(oct(st.st_mode & 0o777), os.listxattr("/workspace"))
    print("colorsys" in sys.modules, "/secret" in sys.path, os.environ.get("SECRET"))
    print(hasattr(builtins, "SECRET"), hasattr(os, "SECRET"))
    libc = ctypes.CDLL(None, use_errno=True)
    print(libc.shmget(0x5EC, 0, 0), libc.semget(0x5EC, 0, 0), libc.msgget(0x5EC, 0))
    for kind in ("shm", "sem", "msg"):
        print(kind, len(open(f"/proc/sysvipc/{kind}").read().splitlines()) - 1)
    others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, 2, os.getpid())]
    print("others", others)
    """
)


def test_nothing_carries_over_to_the_next_run(single: Sandbox) -> None:
    first = _ok(single.run_code(LEAVE_EVERYTHING))
    lines = _ok(single.run_code(SEE_NOTHING)).splitlines()
    # The same sandbox (its pid namespace counts on), and none of what the first run left.
    assert int(lines[0]) > int(first)
    assert lines[1:4] == ["/workspace ['main.py']", "/tmp []", "/dev/shm []"]
    assert lines[4] == "0o700 []"
    assert lines[5:7] == ["False False None", "False False"]
    assert lines[7] == "-1 -1 -1" and lines[8:11] == ["shm 0", "sem 0", "msg 0"]
    assert lines[11] == "others []"


def test_a_run_cannot_change_what_the_next_run_inherits(single: Sandbox) -> None:
    # The zygote shares the runs' uid: prlimit and setpriority reach it from a run, and every
    # later run is forked from it.
    tamper = (  # each may be refused (seccomp allows prlimit on oneself only); try them all
        "import os, resource\nzygote = os.getppid()\n"
        "for change in (\n"
        "    lambda: resource.prlimit(zygote, resource.RLIMIT_NOFILE, (64, 64)),\n"
        "    lambda: resource.prlimit(zygote, resource.RLIMIT_FSIZE, (100, 100)),\n"
        "    lambda: os.setpriority(os.PRIO_PROCESS, zygote, 19),\n"
        "    lambda: os.sched_setaffinity(zygote, {min(os.sched_getaffinity(zygote))}),\n"
        "):\n"
        "    try:\n        change()\n    except OSError:\n        pass"
    )
    probe = (
        "import os\nfrom resource import RLIMIT_FSIZE, RLIMIT_NOFILE, getrlimit\n"
        "print(os.getpriority(os.PRIO_PROCESS, 0), len(os.sched_getaffinity(0)),\n"
        "      getrlimit(RLIMIT_NOFILE), getrlimit(RLIMIT_FSIZE))"
    )
    before = _ok(single.run_code(probe))
    _ok(single.run_code(tamper))
    assert _ok(single.run_code(probe)) == before


def test_what_a_run_sets_on_its_output_and_stdin_stays_with_it(single: Sandbox) -> None:
    # stdout and stderr are the zygote's own open pipes, which every run writes into
    tamper = (
        "import fcntl, os\nflags = fcntl.fcntl(1, fcntl.F_GETFL)\n"
        "fcntl.fcntl(1, fcntl.F_SETFL, flags | os.O_DIRECT | os.O_NONBLOCK)\n"  # packets
        "try:\n    while True:\n        os.write(1, b'forged\\n')\nexcept BlockingIOError:\n"
        "    pass\nfcntl.fcntl(2, fcntl.F_SETFL, fcntl.fcntl(2, fcntl.F_GETFL) | os.O_NONBLOCK)\n"
        "fcntl.fcntl(2, fcntl.F_SETPIPE_SZ, 4096)\n"
        "fcntl.flock(0, fcntl.LOCK_EX)"  # the zygote's /dev/null
    )
    assert single.run_code(tamper).status is Status.OK
    later = "import fcntl; fcntl.flock(0, fcntl.LOCK_EX | fcntl.LOCK_NB)\nprint('x' * 100_000)"
    for _ in range(2):
        result = single.run_code(later)
        assert result.status is Status.OK and result.stdout == "x" * 100_000 + "\n", result


def test_posix_message_queues_are_refused(single: Sandbox) -> None:
    # They outlive a run in the shared IPC namespace and cannot be listed to be removed.
    code = (
        "import ctypes; libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.mq_open(b'/q', 0o102, 0o600, None), ctypes.get_errno())"
    )
    assert _ok(single.run_code(code)) == "-1 1\n"  # EPERM


HOLD = textwrap.dedent(
    r"""
    import ctypes, os, socket, subprocess, time
    open("/tmp/marker-a", "w").write("a")
    open("/dev/shm/marker-a", "w").write("a")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind("\0stockade-pool-test")
    listener.listen()
    assert ctypes.CDLL(None).shmget(0xA11, 4096, 0o1666) >= 0
    sleeper = subprocess.Popen(["sleep", "30"])
    print("holding", flush=True)
    time.sleep(3)
    """
)

LOOK = textwrap.dedent(
    r"""
    import ctypes, os, socket, time
    time.sleep(1)
    print(os.listdir("/tmp"), os.listdir("/dev/shm"))
    try:
        socket.socket(socket.AF_UNIX).connect("\0stockade-pool-test")
        print("connected")
    except OSError as exc:
        print("refused", exc.errno)
    print(ctypes.CDLL(None).shmget(0xA11, 0, 0))
    print([p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, 2, os.getpid())])
    """
)


def test_concurrent_runs_cannot_see_each_other(pooled: Sandbox) -> None:
    with ThreadPoolExecutor(2) as threads:
        holding = threads.submit(pooled.run_code, HOLD)
        looking = threads.submit(pooled.run_code, LOOK)
        held, looked = holding.result(), looking.result()
    assert _ok(held) == "holding\n"
    lines = _ok(looked).splitlines()
    assert lines[0] == "[] []"
    assert lines[1].startswith("refused")
    assert lines[2:] == ["-1", "[]"]
    assert held.wall_time > 2.5 and looked.wall_time > 0.9  # they did overlap


def test_limits_hold_for_pooled_runs() -> None:
    with _pool(1, timeout=1, memory="128M", pids=16) as box:
        spin = box.run_code("while True: pass")
        assert spin.status is Status.TIMEOUT and spin.wall_time < 2
        hog = box.run_code("x = bytearray(300 << 20); print('survived')")
        assert hog.status is Status.MEMORY_LIMIT and hog.stdout == ""
        assert hog.peak_memory >= 100 << 20
        forks = textwrap.dedent(
            """
            import subprocess
            started = []
            try:
                for _ in range(40):
                    started.append(subprocess.Popen(["sleep", "5"]))
            except OSError as exc:
                print(len(started), exc.errno)
            """
        )
        assert _ok(box.run_code(forks)) == "14 11\n"  # init, zygote, python, 14 = 16 + 1
        assert _ok(box.run_code("print('fine')")) == "fine\n"


def test_cpu_time_of_the_whole_tree() -> None:
    """Two processes spin: the tree reaches the limit before either one's RLIMIT_CPU."""
    box = _pool(1, cpu_time=1, timeout=20)
    try:
        spin_two = textwrap.dedent(
            """
            import os
            os.fork()
            while True:
                pass
            """
        )
        result = box.run_code(spin_two)
        assert result.status is Status.TIMEOUT, result
        assert result.wall_time < 10
        assert _ok(box.run_code("print('next')")) == "next\n"
    finally:
        box.close()


def test_the_pool_replaces_a_sandbox_that_dies(pooled: Sandbox) -> None:
    assert pooled.pool is not None
    killer = "import os, signal, time; os.kill(os.getppid(), signal.SIGKILL); time.sleep(5)"
    result = pooled.run_code(killer)
    assert result.status is Status.SIGNALED and result.signal == 9
    assert result.error is not None and "pooled interpreter" in result.error
    assert result.wall_time < 4
    for i in range(6):
        assert _ok(pooled.run_code(f"print({i})")) == f"{i}\n"
    deadline = time.monotonic() + 10
    while len(pooled.pool._all) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pooled.pool._all) == 2


def test_threads_and_asyncio(pooled: Sandbox) -> None:
    with ThreadPoolExecutor(8) as threads:
        outputs = list(threads.map(lambda i: pooled.run_code(f"print({i})").stdout, range(24)))
    assert outputs == [f"{i}\n" for i in range(24)]

    async def main() -> list[str]:
        runs = [pooled.arun_code(f"print({i} * 2)") for i in range(6)]
        return [r.stdout for r in await asyncio.gather(*runs)]

    assert asyncio.run(main()) == [f"{i * 2}\n" for i in range(6)]


def test_preloaded_modules_are_imported() -> None:
    with Sandbox(Policy.load("default"), pool=1, preload=("decimal",)) as box:
        assert _ok(box.run_code("import sys; print('decimal' in sys.modules)")) == "True\n"


def test_a_pool_that_cannot_start_says_why() -> None:
    with Sandbox(Policy.load("default"), pool=1, preload=("no_such_module_here",)) as box:
        result = box.run_code("print(1)")
    assert result.status is Status.SETUP_FAILED
    assert result.error is not None and "no_such_module_here" in result.error


def test_refused_configurations() -> None:
    with pytest.raises(PolicyError, match="pool"):
        Sandbox(Policy.load("default"), pool=-1)
    with pytest.raises(PolicyError, match="allowlist"):
        Sandbox(Policy.load("default").override(allow_net=["example.com"]), pool=1)
    with pytest.raises(PolicyError, match="preload"):
        Sandbox(Policy.load("default"), pool=1, preload=("os; import x",))


def test_a_closed_pool_refuses_runs() -> None:
    box = _pool(1)
    assert _ok(box.run_code("print(1)")) == "1\n"
    box.close()
    box.close()
    with pytest.raises(SandboxError, match="closed"):
        box.run_code("print(1)")


def test_a_forked_child_runs_fresh_and_leaves_the_pool_alone(single: Sandbox) -> None:
    assert _ok(single.run_code("print(1)")) == "1\n"
    child = os.fork()
    if child == 0:  # the pool's sandboxes and its keeper thread are the parent's
        code = 1
        try:
            result = single.run_code("print(2)")
            single.close()  # must not end the parent's sandboxes
            code = 0 if result.stdout == "2\n" else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(child, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(child, 9)
        os.waitpid(child, 0)
    assert done[0] == child and os.waitstatus_to_exitcode(done[1]) == 0
    assert _ok(single.run_code("print(3)")) == "3\n"  # the parent's pool still works


def test_close_during_a_run_ends_it() -> None:
    box = _pool(1)
    results: list[Result] = []
    sleep = "import time; time.sleep(30)"
    runner = threading.Thread(target=lambda: results.append(box.run_code(sleep)))
    runner.start()
    time.sleep(1.0)
    box.close()
    runner.join(10)
    assert not runner.is_alive()
    assert results[0].status is Status.SIGNALED and "closed" in (results[0].error or "")


def test_start_is_a_long_lived_run_with_raw_pipes(box: Sandbox) -> None:
    """The primitive under the pool: a run whose pipes the caller holds, killed on demand."""
    run = box.start(["sh", "-c", "read line; echo got $line; sleep 100"])
    try:
        assert run.stdin is not None
        os.write(run.stdin, b"hello\n")
        assert os.read(run.stdout, 100) == b"got hello\n"
        started = run.started()
        assert started is not None and started.cgroup is not None
        run.kill()
        result = run.wait()
        assert result.status is Status.SIGNALED and result.signal == 9
    finally:
        run.close()


def test_the_policy_names_the_modules_to_preload() -> None:
    check = "import sys; print(sorted(m for m in ('wave', 'xml.dom') if m in sys.modules))"
    policy = Policy.from_dict({"process": {"preload": ["xml.dom"]}})
    with Sandbox(policy, pool=1) as box:
        assert box.run_code(check).stdout == "['xml.dom']\n"
    with Sandbox(Policy.load("default"), pool=1) as box:
        assert box.run_code(check).stdout == "[]\n"

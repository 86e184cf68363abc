"""Workspaces (workspace/): one sandbox across many commands, running at once, with files in
and out, a Python session inside, and an end that leaves nothing behind."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from stockade import Policy, Sandbox, Status, Workspace, WorkspaceError, WorkspaceFileError
from tests.conftest import needs_root

pytestmark = needs_root()


@pytest.fixture
def ws() -> Iterator[Workspace]:
    with Sandbox(Policy.load("default").override(timeout=20)).workspace() as workspace:
        yield workspace


def _sleeps(ws: Workspace, marker: str) -> int:
    """How many processes of the workspace run `sleep <marker>`, seen from inside."""
    lines = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done"
    return int(ws.exec(f"{lines} | grep -c '^sleep {marker} $'").stdout)


def _running(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in (process.info["cmdline"] or []):
            found.append(process)
    return found


# ------------------------------------------------------------------ commands


def test_commands_share_the_workspace_files_and_environment(ws: Workspace) -> None:
    assert ws.exec(["sh", "-c", "echo one > shared.txt"]).ok
    ws.write_file("from-host.txt", "two\n")
    result = ws.exec("cat shared.txt from-host.txt; pwd; echo $GREETING", env={"GREETING": "hi"})
    assert result.status is Status.OK, result
    assert result.stdout == "one\ntwo\n/workspace\nhi\n"
    assert ws.exec(["pwd"], cwd="/tmp").stdout == "/tmp\n"
    assert ws.exec(["cat"], stdin=b"fed").stdout == "fed"
    assert ws.read_file("shared.txt") == b"one\n"


def test_an_unknown_command_and_a_missing_directory_are_reported(ws: Workspace) -> None:
    missing = ws.exec(["no-such-command"])
    assert missing.exit_code == 127 and "no-such-command" in (missing.error or "")
    nowhere = ws.exec(["true"], cwd="/workspace/nowhere")
    assert nowhere.status is Status.SETUP_FAILED and "cwd" in (nowhere.error or "")
    assert ws.exec(["true"]).ok


def test_eight_commands_run_at_once_and_see_each_others_files(ws: Workspace) -> None:
    # Each writes its file, then waits until all eight are there: commands run one at a
    # time would never get past the first one's wait (its timeout would end it).
    line = "echo {i} > f{i}; while [ $(ls f* | wc -l) -lt 8 ]; do sleep 0.05; done; cat f* | wc -l"
    with ThreadPoolExecutor(8) as threads:
        results = list(threads.map(lambda i: ws.exec(line.format(i=i), timeout=15), range(8)))
    assert [r.status for r in results] == [Status.OK] * 8, results
    assert {r.stdout for r in results} == {"8\n"}


def test_kill_one_command_while_others_run(ws: Workspace) -> None:
    victim = ws.start("sleep 41.5 & sleep 41.5 & wait")
    other = ws.start("sleep 1; echo other")
    deadline = time.monotonic() + 10
    while _sleeps(ws, "41.5") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.kill()
    killed = victim.wait()
    assert killed.status is Status.SIGNALED and killed.signal == signal.SIGKILL
    assert _sleeps(ws, "41.5") == 0  # its whole tree, the background sleeps too
    finished = other.wait()
    assert finished.status is Status.OK and finished.stdout == "other\n"


def test_a_crash_or_a_timeout_leaves_the_workspace_working(ws: Workspace) -> None:
    crashed = ws.exec("kill -SEGV $$")
    assert crashed.status is Status.SIGNALED and crashed.signal == signal.SIGSEGV
    slow = ws.exec("sleep 42.5 & sleep 42.5", timeout=1)
    assert slow.status is Status.TIMEOUT
    assert _sleeps(ws, "42.5") == 0
    spinner = "python3 -c 'while True: pass'"
    spun = Sandbox(Policy.load("default").override(cpu_time=1, timeout=20))
    with spun.workspace() as busy:
        assert busy.exec(spinner).status is Status.TIMEOUT
        assert busy.exec(["echo", "after"]).stdout == "after\n"
    assert ws.exec(["echo", "still"]).stdout == "still\n"


def test_a_killed_keeper_takes_only_its_own_command(ws: Workspace) -> None:
    # Commands share the workspace's uid: one can kill its own keeper ($PPID). Its result
    # says so, the tree it left is ended by the guest, the others go on.
    other = ws.start(["sh", "-c", "sleep 1; echo other"])
    lost = ws.exec("sleep 47.5 & kill -9 $PPID; wait")
    assert lost.status is Status.SIGNALED and "keeper" in (lost.error or "")
    deadline = time.monotonic() + 10
    while _sleeps(ws, "47.5") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sleeps(ws, "47.5") == 0
    assert other.wait().stdout == "other\n"
    assert ws.exec(["echo", "still"]).stdout == "still\n"


def test_a_killed_guest_ends_the_workspace(ws: Workspace) -> None:
    guest = "kill -9 $(cut -d' ' -f4 /proc/$PPID/stat); sleep 30"
    with pytest.raises(WorkspaceError, match="guest program ended"):
        ws.exec(guest)
    assert not ws.alive


def test_processes_a_command_leaves_end_with_it(ws: Workspace) -> None:
    result = ws.exec("sleep 43.5 > /dev/null 2>&1 & echo started")
    assert result.ok and result.stdout == "started\n"
    assert _sleeps(ws, "43.5") == 0


def test_streamed_output_stdin_and_callbacks(ws: Workspace) -> None:
    seen: list[bytes] = []
    handle = ws.start("for i in 1 2 3; do echo $i; sleep 0.1; done", on_stdout=seen.append)
    streamed = b"".join(handle.stdout)
    result = handle.wait()
    assert streamed == b"".join(seen) == result.stdout_bytes == b"1\n2\n3\n"
    cat = ws.start(["cat"])
    cat.write(b"abc")
    cat.close_stdin()
    assert cat.wait().stdout == "abc"


def test_threads_and_asyncio_with_cancellation(ws: Workspace) -> None:
    async def main() -> list[str]:
        slow = asyncio.create_task(ws.aexec(["sleep", "44.5"], timeout=60))
        outputs = await asyncio.gather(*(ws.aexec(["echo", str(i)]) for i in range(4)))
        await asyncio.sleep(0.3)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        return [r.stdout for r in outputs]

    assert asyncio.run(main()) == [f"{i}\n" for i in range(4)]
    deadline = time.monotonic() + 10
    while _sleeps(ws, "44.5") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sleeps(ws, "44.5") == 0


# ------------------------------------------------------------------ limits of the workspace


def test_a_fork_bomb_is_held_by_the_workspace_pids_limit() -> None:
    """What happens to the others: a command already running goes on (it needs no new
    process); a command started while the bomb holds every pid cannot be made (its Result is
    setup_failed, naming fork) or gets no process for its own children; once the bomb's
    timeout ends its tree, the workspace works again."""
    box = Sandbox(Policy.load("default").override(pids=32, timeout=20))
    with box.workspace() as ws:
        steady = ws.start(["sleep", "4"])
        bomb = ws.start(["bash", "-c", "b() { b | b & }; b; exec sleep 10"], timeout=2)
        time.sleep(0.5)
        during = ws.exec(["sh", "-c", "sleep 0.1 & wait; echo made"], timeout=5)
        assert during.ok or during.status in (Status.SETUP_FAILED, Status.NONZERO_EXIT), during
        if during.status is Status.SETUP_FAILED:
            assert "fork" in (during.error or "")
        assert bomb.wait().status is Status.TIMEOUT
        assert steady.wait().status is Status.OK
        assert ws.exec(["echo", "after"]).stdout == "after\n"
        many = ws.exec("for i in $(seq 60); do sleep 1 & done; wait")
        assert "fork" in many.stderr or "Resource temporarily unavailable" in many.stderr


def test_the_memory_limit_holds_across_commands() -> None:
    box = Sandbox(Policy.load("default").override(memory="128M", timeout=30))
    allocate = ["python3", "-c", "b = bytearray(70 << 20); print(len(b) >> 20)"]
    with box.workspace() as ws:
        assert ws.exec(allocate).stdout == "70\n"  # alone, it fits
        assert ws.exec("head -c 60M /dev/zero > /tmp/held").ok  # another command's tmpfs
        assert ws.exec(allocate).status is Status.MEMORY_LIMIT
        ws.remove("/tmp/held")
        assert ws.exec(allocate).stdout == "70\n"


def test_each_command_is_confined_as_a_run_is() -> None:
    box = Sandbox(Policy.load("default").override(uid=4242, gid=4343))
    with box.workspace() as ws:
        wanted = "^(Uid|Gid|NoNewPrivs|Seccomp|CapEff|CapBnd):"
        status = ws.exec(["grep", "-E", wanted, "/proc/self/status"])
        fields = dict(line.split(":\t", 1) for line in status.stdout.splitlines())
        assert fields["Uid"].split() == ["4242"] * 4
        assert fields["Gid"].split() == ["4343"] * 4
        assert fields["NoNewPrivs"].strip() == "1"
        assert fields["Seccomp"].strip() == "2"
        assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
        ws.write_file("mine.txt", "x")
        assert ws.exec(["stat", "-c", "%u:%g", "mine.txt"]).stdout == "4242:4343\n"
        connect = "import socket; socket.create_connection(('1.1.1.1', 53), 2)"
        net = ws.exec(["python3", "-c", connect])
        assert net.status is Status.NONZERO_EXIT and "Network is unreachable" in net.stderr


# ------------------------------------------------------------------ files


def test_files_list_and_remove(ws: Workspace) -> None:
    ws.write_file("dir/sub/a.txt", b"a")
    ws.exec("ln -s /etc/passwd dir/link && mkdir dir/empty")
    entries = {e.name: e.kind for e in ws.list("dir")}
    assert entries == {"sub": "dir", "link": "link", "empty": "dir"}
    assert [(e.name, e.size) for e in ws.list("dir/sub")] == [("a.txt", 1)]
    with pytest.raises(WorkspaceFileError) as exists:
        ws.write_file("dir/sub/a.txt", "b", overwrite=False)
    assert exists.value.errno == 17 and exists.value.filename == "dir/sub/a.txt"
    with pytest.raises(WorkspaceFileError) as missing:
        ws.read_file("nothing.txt")
    assert missing.value.errno == 2
    with pytest.raises(WorkspaceFileError) as full:
        ws.remove("dir")
    assert full.value.errno == 39  # ENOTEMPTY: only `recursive` removes what is in it
    ws.remove("dir/link")
    assert ws.exec(["test", "-f", "/etc/passwd"]).ok  # the link went, not what it names
    ws.remove("dir", recursive=True)
    assert ws.list() == []


def _tree(ws: Workspace) -> None:
    made = ws.exec(
        [
            "python3",
            "-c",
            """
import os
os.makedirs("deep/" + "/".join(["d"] * 120))
with open("deep/" + "/".join(["d"] * 120) + "/bottom.txt", "w") as f:
    f.write("bottom")
os.makedirs("empty/inner")
for name in ["with space", "new\\nline", "ünïcödé", "-dash", "'quote\\"", "*star?"]:
    with open(name, "w") as f:
        f.write(name)
with open(b"bytes\\xff", "wb") as f:
    f.write(b"not utf-8")
os.symlink("ünïcödé", "relative-link")
os.chmod("ünïcödé", 0o600)
""",
        ]
    )
    assert made.ok, made


def _members(tar: bytes) -> dict[str, tuple[str, bytes | str | None, int]]:
    found = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive:
            content: bytes | str | None = None
            if member.isfile():
                content = archive.extractfile(member).read()  # type: ignore[union-attr]
            elif member.issym():
                content = member.linkname
            kind = "dir" if member.isdir() else "file" if member.isfile() else "link"
            found[member.name] = (kind, content, member.mode & 0o777)
    return found


def test_export_and_import_round_trip(ws: Workspace) -> None:
    _tree(ws)
    exported = ws.export()
    members = _members(exported)
    assert members["empty/inner"][0] == "dir"
    assert members["deep/" + "/".join(["d"] * 120) + "/bottom.txt"][1] == b"bottom"
    assert members["new\nline"][1] == b"new\nline"
    assert members["bytes\udcff"][1] == b"not utf-8"
    assert members["relative-link"][:2] == ("link", "ünïcödé")
    assert members["ünïcödé"][2] == 0o600
    with Sandbox(Policy.load("default")).workspace() as other:
        other.import_(exported)
        assert _members(other.export()) == members
        assert other.exec(["cat", "relative-link"]).stdout == "ünïcödé"
        assert other.exec(["ls", "empty"]).stdout == "inner\n"


def test_an_import_outside_the_directory_is_refused(ws: Workspace) -> None:
    for name in ("../escape", "/abs"):
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        with pytest.raises(WorkspaceFileError, match="outside"):
            ws.import_(archive.getvalue())
    assert ws.exec(["ls", "-A", "/"]).stdout.count("escape") == 0


# ------------------------------------------------------------------ sessions inside


def test_python_sessions_share_the_workspace(ws: Workspace) -> None:
    ws.write_file("numbers.txt", "1\n2\n3\n")
    with ws.python(timeout=10) as session:
        assert session.run("total = sum(int(x) for x in open('numbers.txt'))").ok
        assert session.run("print(total)").stdout == "6\n"
        session.run("open('from-python.txt', 'w').write(str(total * 2))")
        assert ws.exec(["cat", "from-python.txt"]).stdout == "12"
        interrupted = session.run("while True: pass", timeout=0.5)
        assert interrupted.status is Status.TIMEOUT
        assert session.run("print(total)").stdout == "6\n"  # its state survived
    assert ws.exec(["echo", "after"]).stdout == "after\n"


def test_a_workspace_session_calls_host_tools(ws: Workspace) -> None:
    seen: list[int] = []

    def double(n: int) -> int:
        seen.append(n)
        return 2 * n

    ws.write_file("n.txt", "21")
    with ws.python(tools=[double]) as session:
        result = session.run("print(double(int(open('n.txt').read())))")
        assert result.stdout == "42\n", result
        assert [call.tool for call in result.tool_calls] == ["double"]
    assert seen == [21]


# ------------------------------------------------------------------ the end


def test_idle_and_lifetime_end_the_workspace() -> None:
    box = Sandbox(Policy.load("default").override(workspace_idle=1))
    idle = box.workspace()
    assert idle.exec(["true"]).ok
    deadline = time.monotonic() + 15
    while idle.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(WorkspaceError, match="idle"):
        idle.exec(["true"])
    idle.close()
    short = box.workspace(idle=60, lifetime=1.5)
    with pytest.raises(WorkspaceError, match="lifetime"):
        short.exec(["sleep", "30"], timeout=60)
    short.close()


def test_close_ends_commands_running_on_other_threads(ws: Workspace) -> None:
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            ws.exec(["sleep", "45.5"], timeout=60)
        except WorkspaceError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)
    ws.close()
    thread.join(10)
    assert not thread.is_alive() and "closed" in str(outcome[0])
    with pytest.raises(WorkspaceError, match="closed"):
        ws.exec(["true"])


_OWNER = """
import sys, time
from stockade import Sandbox
ws = Sandbox().workspace()
ws.start(["sleep", "46.5"])
while "46.5" not in ws.exec("cat /proc/[0-9]*/cmdline | tr '\\\\0' ' '").stdout:
    time.sleep(0.05)
print("ready", flush=True)
time.sleep(60)
"""


def test_nothing_is_left_when_the_owner_is_killed() -> None:
    owner = subprocess.Popen([sys.executable, "-c", _OWNER], stdout=subprocess.PIPE)
    try:
        assert owner.stdout is not None and owner.stdout.readline() == b"ready\n"
        assert _running("46.5")
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 15
    while _running("46.5") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running("46.5")

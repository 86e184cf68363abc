"""The command line contract: commands, exit codes, --json, and every kind of bad input."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import needs_root


def sandbox(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "stockade", *args], input=stdin, capture_output=True, timeout=60
    )


SANDBOX = f'"{sys.executable}" -m stockade'  # the command, as a shell line spells it


def shell(command: str) -> subprocess.CompletedProcess[bytes]:
    """`sh -c command`; if it overruns, its whole process group is killed: a hung command's
    children must not outlive the test."""
    with subprocess.Popen(
        ["sh", "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as running:
        try:
            out, err = running.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(running.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(running.args, running.returncode, out, err)


def test_run_passes_output_and_exit_code_through() -> None:
    done = sandbox("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")


def test_run_python() -> None:
    done = sandbox("run", "--", "python3", "-c", "print(1)")
    assert (done.returncode, done.stdout) == (0, b"1\n")


def test_stdin_is_the_commands_stdin() -> None:
    assert sandbox("run", "--", "cat", stdin=b"piped").stdout == b"piped"


@pytest.mark.parametrize(
    "args,code",
    [
        (("--timeout", "0.5", "--", "sleep", "10"), 124),
        (("--cpu-time", "1", "--", "python3", "-c", "while 1: pass"), 124),
        (("--memory", "32M", "--", "python3", "-c", "x = bytearray(1 << 28)"), 137),
        (("--", "sh", "-c", "kill -SEGV $$"), 139),
        (("--", "no-such-command"), 127),
        (("--", "/etc/passwd"), 126),
    ],
)
def test_exit_codes(args: tuple[str, ...], code: int) -> None:
    assert sandbox("run", *args).returncode == code


def test_json_prints_the_result() -> None:
    done = sandbox("run", "--json", "--", "sh", "-c", "echo hi; exit 4")
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["status"] == "nonzero_exit" and result["exit_code"] == 4
    assert result["stdout"] == "hi\n"
    assert result["wall_time"] > 0 and result["peak_memory"] > 0


def test_json_with_non_utf8_output() -> None:
    done = sandbox("run", "--json", "--", "printf", "\\377\\000ok")
    assert json.loads(done.stdout)["stdout"] == "\ufffd\x00ok"


def test_code_from_file_and_stdin(tmp_path: Path) -> None:
    script = tmp_path / "hello.py"
    script.write_text("import sys; print('hello', sys.argv[0])")
    assert sandbox("code", str(script)).stdout == b"hello hello.py\n"  # its own name
    assert sandbox("code", "-", stdin=b"print(6 * 7)").stdout == b"42\n"
    assert sandbox("code", "--language", "sh", "-", stdin=b"echo $0").stdout == b"main.sh\n"


def test_file_and_env_flags(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n")
    done = sandbox(
        "run",
        "--file",
        str(data),
        "--file",
        f"{data}:sub/copy.csv",
        "--env",
        "X=1",
        "--",
        "sh",
        "-c",
        "cat data.csv sub/copy.csv; echo $X",
    )
    assert done.stdout == b"a,b\na,b\n1\n"


def test_policies_lists_builtins() -> None:
    done = sandbox("policies")
    assert done.returncode == 0
    assert {line.split()[0] for line in done.stdout.decode().splitlines()} >= {"default", "strict"}


def test_doctor_reports_each_protection() -> None:
    done = sandbox("doctor", "--json")
    report = json.loads(done.stdout)
    names = {check["name"] for check in report["checks"]}
    assert {
        "namespace.mount",
        "namespace.pid",
        "namespace.net",
        "namespace.user",
        "pivot_root",
        "overlayfs",
        "seccomp",
        "cgroup.memory",
        "cgroup.pids",
    } <= names
    assert done.returncode == (0 if report["ok"] else 1)
    for check in report["checks"]:  # says where a run's cgroups go, for delegating them
        if check["name"] in ("cgroup.memory", "cgroup.pids") and check["available"]:
            assert check["detail"].startswith("available: run cgroups go under /")
            assert check["detail"].endswith("/stockade")


@needs_root()
@pytest.mark.parametrize(
    ("pattern", "available", "says"),
    [("core", True, "writes no core file"), ("|/usr/bin/dumper %p", False, "/usr/bin/dumper")],
)
def test_doctor_warns_of_a_core_pattern_that_pipes(
    tmp_path: Path, pattern: str, available: bool, says: str
) -> None:
    """The host's core_pattern, replaced in a private mount namespace of the test's own."""
    fake = tmp_path / "core_pattern"
    fake.write_text(pattern + "\n")
    script = 'mount --bind "$0" /proc/sys/kernel/core_pattern && exec "$@"'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(fake),
         sys.executable, "-m", "stockade", "doctor", "--json"],
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    (check,) = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "core_dumps"]
    assert (check["available"], check["required"]) == (available, False)
    assert says in check["detail"]


def test_as_root_mounts_below_the_runtime_are_shown_read_only() -> None:
    """The same plan as rootless (tests/rootless): /usr in parts around real mounts below it,
    made in a private mount namespace of the test's own; each is shown, read-only."""
    below = "/usr/local/src"
    if not os.path.isdir(below):
        pytest.skip(f"needs the directory {below} to mount on")
    script = (
        'mount -t tmpfs -o size=64k stockade-below "$0" && echo below > "$0/marker" && exec "$@"'
    )
    inside = f"cat {below}/marker; touch {below}/new 2>/dev/null || echo read-only"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, below,
         sys.executable, "-m", "stockade", "run", "--", "sh", "-c", inside],
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, b"below\nread-only\n"), done.stderr


def test_doctor_says_why_an_overlay_cannot_be_mounted() -> None:
    from stockade import doctor
    from stockade.kernel import mounts

    def overlay_of_proc(root: str) -> None:  # the kernel refuses procfs as an overlay layer
        os.mkdir(root + "/x")
        mounts.mount_overlay("/proc", root + "/x")

    available, detail = doctor._in_a_new_root(overlay_of_proc)
    assert not available
    assert "cannot mount a read-only overlay of /proc" in detail and "Invalid argument" in detail


@pytest.mark.parametrize(
    "args,message",
    [
        (("--file", "/nonexistent/x", "--", "true"), b"--file"),
        (("--env", "NOEQUALS", "--", "true"), b"--env"),
        (("--env", "1A=b", "--", "true"), b"--env"),
        (("--policy", "nope", "--", "true"), b"unknown policy"),
        (("--timeout", "0", "--", "true"), b"limits.timeout"),
        (("--timeout", "-1", "--", "true"), b"limits.timeout"),
        (("--memory", "99T", "--", "true"), b"limits.memory"),
        (("--memory", "lots", "--", "true"), b"limits.memory"),
        (("--pids", "0", "--", "true"), b"limits.pids"),
        (("--", "true", *["x" * 65536] * 20), b"argv"),
        ((), b"COMMAND"),
    ],
)
def test_bad_input_is_refused_clearly(args: tuple[str, ...], message: bytes) -> None:
    done = sandbox("run", *args)
    assert done.returncode == 125, done
    assert message in done.stderr


def test_invalid_toml_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\ntimeout = = 3\n")
    done = sandbox("run", "--policy", str(bad), "--", "true")
    assert done.returncode == 125 and b"invalid TOML" in done.stderr


def test_unknown_command_is_a_usage_error() -> None:
    done = sandbox("frobnicate")
    assert done.returncode == 125
    assert done.stderr.startswith(b"usage: sandbox") and b"invalid choice" in done.stderr


def test_setup_failure_is_125(tmp_path: Path) -> None:
    """Input files that do not fit in the policy's /workspace cannot be written there: the
    sandbox cannot be set up, and says which step failed and why."""
    policy = tmp_path / "small.toml"
    policy.write_text('[filesystem]\nworkspace_size = "64K"\n')
    (tmp_path / "big").write_bytes(b"x" * 100_000)
    argv = ("--policy", str(policy), "--file", f"{tmp_path / 'big'}:big", "--", "true")
    done = sandbox("run", *argv)
    assert done.returncode == 125
    assert b"mounts.workspace_files" in done.stderr and b"ENOSPC" in done.stderr
    as_json = sandbox("run", "--json", *argv)
    assert as_json.returncode == 125
    assert json.loads(as_json.stdout)["status"] == "setup_failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "--file", "/dev/zero", "--", "true"), b"--file: '/dev/zero' is larger than"),
        (("run", "--policy", "/dev/zero", "--", "true"), b"policy: '/dev/zero' is longer than"),
        (("code", "/dev/zero"), b"FILE: '/dev/zero' is larger than"),
    ],
)
def test_an_endless_input_is_refused(args: tuple[str, ...], message: bytes) -> None:
    done = sandbox(*args)
    assert done.returncode == 125 and message in done.stderr


def test_ctrl_c_ends_the_run_without_a_traceback() -> None:
    command = subprocess.Popen(
        [sys.executable, "-m", "stockade", "run", "--", "sleep", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)  # the run has started
        command.send_signal(signal.SIGINT)
        _, err = command.communicate(timeout=30)
    finally:
        command.kill()
    assert command.returncode == 130
    assert err == b"sandbox: interrupted\n"


def test_the_callers_terminal_is_never_the_workloads_stdin() -> None:
    # Not its controlling terminal, a terminal would let the workload read keystrokes meant
    # for the shell (job control never stops it), change its modes, write past the cap.
    ours, theirs = pty.openpty()
    try:
        probe = "import os, sys; print(os.isatty(0), repr(sys.stdin.read()))"
        done = subprocess.run(
            [sys.executable, "-m", "stockade", "run", "--", "python3", "-c", probe],
            stdin=theirs,
            capture_output=True,
            timeout=60,
        )
    finally:
        os.close(ours)
        os.close(theirs)
    assert (done.returncode, done.stdout) == (0, b"False ''\n")


def test_a_file_stdin_is_read_on_from_where_the_caller_is_through_its_own_open_file(
    tmp_path: Path,
) -> None:
    lines = tmp_path / "lines"
    lines.write_text("first\nsecond\n")
    lock = "import fcntl; fcntl.flock(0, fcntl.LOCK_EX); print(open(0).read(), end='')"
    run = f'{SANDBOX} run -- python3 -c "{lock}"'
    # the shell reads a line first; the run goes on from there; its flock ends with it
    script = f"{{ read -r line; {run}; flock -n {lines} echo unlocked; }} < {lines}"
    done = shell(script)
    assert (done.returncode, done.stdout) == (0, b"second\nunlocked\n"), done.stderr


def test_a_socket_stdin_is_not_handed_to_the_workload() -> None:
    ours, theirs = socket.socketpair()  # what libuv (Node) gives a child for its stdio
    with ours, theirs:
        write_back = "import os; os.write(0, b'into the caller')"
        done = subprocess.run(
            [sys.executable, "-m", "stockade", "run", "--", "python3", "-c", write_back],
            stdin=theirs,
            capture_output=True,
            timeout=60,
        )
        ours.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing came through to the caller's peer
            ours.recv(100)
    assert done.returncode == 1 and b"Bad file descriptor" in done.stderr


def test_a_named_fifo_whose_writer_has_gone_is_still_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    command = f"(echo hi > {fifo}) & sleep 0.3; {SANDBOX} run -- cat < {fifo}"
    done = shell(command)
    assert (done.returncode, done.stdout) == (0, b"hi\n"), done.stderr


def test_a_closed_stdin_gives_the_workload_nothing() -> None:
    # With fd 0 closed, the first fd the run's own setup opened (a pipe of its) would be 0
    command = f"{SANDBOX} run -- cat <&-"
    done = shell(command)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_a_piped_stdin_reaches_the_workload_through_an_open_file_of_its_own() -> None:
    set_nonblocking = "import fcntl, os; fcntl.fcntl(0, fcntl.F_SETFL, os.O_NONBLOCK)"
    run = f"{SANDBOX} run -- python3 -c '{set_nonblocking}'"
    # cat reads the same pipe afterwards, before its writer has written: non-blocking, it
    # would find it empty and fail
    script = f"(sleep 1; echo kept) | {{ {run} && cat; }}"
    done = shell(script)
    assert (done.returncode, done.stdout) == (0, b"kept\n"), done.stderr


def test_a_pids_limit_must_leave_room_for_the_workload() -> None:
    done = sandbox("run", "--pids", "1", "--", "true")  # the run's init is one of them
    assert done.returncode == 125 and b"limits.pids" in done.stderr


def test_a_second_run_of_a_policy_needs_no_pydantic(tmp_path: Path) -> None:
    """Validated policies are kept (policy/view.py): running the same policy with the same
    flags again imports no pydantic at all, and behaves the same."""
    probe = (
        "import sys; from stockade.cli import main; code = main(sys.argv[1:]); "
        "print('pydantic' in sys.modules, code)"
    )
    env = {**os.environ, "STOCKADE_CACHE_DIR": str(tmp_path / "cache")}
    argv = [sys.executable, "-c", probe, "run", "--timeout", "7", "--", "true"]
    runs = [subprocess.run(argv, env=env, capture_output=True, timeout=60) for _ in range(2)]
    assert [run.stdout.split() for run in runs] == [[b"True", b"0"], [b"False", b"0"]], runs


def test_a_run_imports_none_of_the_heavy_modules() -> None:
    """The command's imports are its cost (bench/RESULTS.md): once its policy and seccomp
    programs are cached, a run imports no pydantic, no compiler of filters, and none of the
    stdlib modules the package used to pull in (dataclasses with inspect and ast, tempfile
    with shutil, threading), and nothing of the optional extras (the MCP SDK, OpenTelemetry)."""
    heavy = ("pydantic", "pyseccomp", "dataclasses", "inspect", "ast", "tempfile", "threading",
             "mcp", "opentelemetry")  # fmt: skip
    probe = (
        "import sys; from stockade.cli import main; code = main(sys.argv[1:]); "
        f"print(sorted(name for name in {heavy!r} if name in sys.modules), code)"
    )
    argv = [sys.executable, "-c", probe, "run", "--", "true"]
    runs = [subprocess.run(argv, capture_output=True, timeout=60) for _ in range(2)]
    assert runs[-1].stdout == b"[] 0\n", runs


def test_help_lists_every_command() -> None:
    done = sandbox("--help")
    assert done.returncode == 0
    assert all(name in done.stdout for name in (b"run", b"code", b"doctor", b"policies", b"mcp"))


MAKE_FILES = (
    "import os; os.makedirs('out/deep', exist_ok=True); "
    "open('out/deep/a.bin', 'wb').write(bytes(range(256))); open('b.txt', 'w').write('b')"
)


def test_output_dir_writes_the_files_the_run_left(tmp_path: Path) -> None:
    out = tmp_path / "made" / "here"  # created, parents too
    done = sandbox("code", "--output-dir", str(out), "-", stdin=MAKE_FILES.encode())
    assert done.returncode == 0, done
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["b.txt", "main.py", "out/deep/a.bin"]
    assert (out / "out/deep/a.bin").read_bytes() == bytes(range(256))


def test_collect_narrows_what_output_dir_gets_and_json_names_it(tmp_path: Path) -> None:
    args = ("--json", "--output-dir", str(tmp_path), "--collect", "**/*.bin")
    done = sandbox("code", *args, "-", stdin=MAKE_FILES.encode())
    assert done.returncode == 0, done
    assert json.loads(done.stdout)["files"] == {"out/deep/a.bin": 256}
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["a.bin"]


def test_output_dir_never_writes_through_a_link_planted_in_it(tmp_path: Path) -> None:
    out, victim, elsewhere = tmp_path / "out", tmp_path / "victim", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    victim.write_text("untouched")
    (out / "b.txt").symlink_to(victim)  # a file link: replaced, never written through
    done = sandbox(
        "code", "--output-dir", str(out), "--collect", "b.txt", "-", stdin=MAKE_FILES.encode()
    )
    assert done.returncode == 0, done
    assert victim.read_text() == "untouched"
    assert not (out / "b.txt").is_symlink() and (out / "b.txt").read_text() == "b"
    (out / "out").symlink_to(elsewhere)  # a directory link: not followed, the write refused
    done = sandbox("code", "--output-dir", str(out), "-", stdin=MAKE_FILES.encode())
    assert done.returncode == 125, done
    assert b"--output-dir: cannot write 'out/deep/a.bin'" in done.stderr
    assert list(elsewhere.iterdir()) == []


def test_output_dir_flags_are_checked_before_the_run(tmp_path: Path) -> None:
    marker = tmp_path / "file"
    marker.write_text("")
    done = sandbox("run", "--output-dir", str(marker), "--", "true")
    assert done.returncode == 125 and b"is not a directory" in done.stderr, done
    done = sandbox("run", "--collect", "*.png", "--", "true")
    assert done.returncode == 125 and b"needs --output-dir" in done.stderr, done
    done = sandbox("run", "--output-dir", str(tmp_path), "--collect", "../x", "--", "true")
    assert done.returncode == 125 and b"collect: '../x'" in done.stderr, done


def test_version() -> None:
    from stockade import __version__

    done = sandbox("--version")
    assert (done.returncode, done.stdout) == (0, f"sandbox {__version__}\n".encode())


def test_a_workload_exit_2_is_never_taken_for_a_usage_error() -> None:
    assert sandbox("run", "--", "sh", "-c", "exit 2").returncode == 2
    done = sandbox("run", "--bogus", "--", "true")
    assert done.returncode == 125
    assert done.stderr.startswith(b"usage: sandbox run ") and b"--bogus" in done.stderr


@pytest.mark.parametrize(
    ("command", "usage"),
    [(("code",), "code"), (("doctor",), "doctor"), (("env", "create", "x"), "env create")],
)
def test_an_unknown_option_gets_its_commands_usage(command: tuple[str, ...], usage: str) -> None:
    done = sandbox(*command, "--bogus")
    assert done.returncode == 125
    assert done.stderr.startswith(f"usage: sandbox {usage} ".encode()), done.stderr
    assert done.stderr.endswith(b"sandbox: unrecognized arguments: --bogus\n")


@pytest.mark.parametrize("option", ["--env", "--file", "--allow-net"])
def test_an_option_given_a_double_dash_is_refused_not_a_traceback(option: str) -> None:
    done = sandbox("run", f"{option}=--", "--", "true")  # argparse < 3.13 makes it a list
    assert done.returncode == 125
    assert done.stderr.endswith(f"sandbox: argument {option}: expected one argument\n".encode())


def test_a_bad_limit_in_the_policy_file_is_the_files_not_the_flags(tmp_path: Path) -> None:
    policy = tmp_path / "bad.toml"
    policy.write_text("[limits]\ntimeout = 0\n")
    done = sandbox("run", "--policy", str(policy), "--timeout", "5", "--", "true")
    assert done.returncode == 125
    assert done.stderr == b"sandbox: limits.timeout: Input should be greater than 0\n"


WHY = [
    (("--timeout", "0.5", "--", "sleep", "5"), "killed: wall-clock limit 0.5 s (set by --timeout)"),
    (
        ("--policy", "strict", "--", "sleep", "60"),
        "killed: wall-clock limit 5 s (policy strict; --timeout to change)",
    ),
    (
        ("--cpu-time", "0.3", "--", "python3", "-c", "while 1: pass"),
        "killed: CPU-time limit 0.3 s (set by --cpu-time)",
    ),
    (
        ("--memory", "32M", "--", "python3", "-c", "b = bytearray(200 << 20)"),
        "killed: memory limit 32 MiB (set by --memory)",
    ),
    (
        ("--output-limit", "4", "--", "echo", "hello"),
        "stdout truncated at the output limit, 4 bytes (set by --output-limit)",
    ),
]


@pytest.mark.parametrize(("args", "says"), WHY)
def test_the_command_says_why_a_run_ended_or_was_cut(args: tuple[str, ...], says: str) -> None:
    done = sandbox("run", *args)
    assert f"sandbox: {says}\n".encode() in done.stderr, done
    assert b"sandbox:" not in sandbox("run", "--json", *args).stderr  # the JSON has it all


def test_a_limit_a_policy_file_set_is_not_called_the_default(tmp_path: Path) -> None:
    policy = tmp_path / "quick.toml"
    policy.write_text("[limits]\ntimeout = 0.5\n")
    done = sandbox("run", "--policy", str(policy), "--", "sleep", "5")
    assert done.returncode == 124
    says = f"sandbox: killed: wall-clock limit 0.5 s (policy {policy}; --timeout to change)\n"
    assert says.encode() in done.stderr


def test_warnings_go_to_stderr(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[filesystem]\nreadonly = ["/usr", "/lib", "/lib64", "/bin", "/no-such"]\n')
    done = sandbox("run", "--policy", str(policy), "--", "true")
    assert done.returncode == 0
    assert done.stderr == (
        b"sandbox: warning: filesystem.readonly: /no-such does not exist on this machine; "
        b"the run cannot see it\n"
    )
    as_json = json.loads(sandbox("run", "--json", "--policy", str(policy), "--", "true").stdout)
    assert as_json["warnings"] == [done.stderr.decode()[len("sandbox: warning: ") : -1]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--memory", "256"), b"sandbox: --memory: 256 is bytes; did you mean 256M?\n"),
        (("--memory", "256MB"), b"M, G, T or KiB, MiB, GiB, TiB (binary), e.g. 256M; got '256MB'"),
        (("--memory", "1g"), b"got '1g'"),
        (("--memory", "1000G"), b"--memory: 1000G is more than this machine's memory"),
        (("--policy", "/tmp"), b"policy: '/tmp' is a directory: give a policy's TOML file"),
        (("--cgroups", "sometimes"), b"usage: sandbox run"),
        (("--memory", "2K"), b"--memory: 2K: Input should be greater than or equal to 41943"),
        (("--timeout", "0"), b"sandbox: --timeout: 0: Input should be greater than 0 (limits"),
    ],
)
def test_flags_are_refused_helpfully(args: tuple[str, ...], message: bytes) -> None:
    done = sandbox("run", *args, "--", "true")
    assert done.returncode == 125 and message in done.stderr, done


def test_sizes_take_binary_units_both_ways() -> None:
    for size in ("64M", "64MiB", "65536K", "65536KiB"):
        done = sandbox("run", "--json", "--memory", size, "--", "true")
        assert json.loads(done.stdout)["status"] == "ok", (size, done)


def test_code_keeps_the_file_name_and_takes_arguments(tmp_path: Path) -> None:
    program = tmp_path / "job.py"
    program.write_text("import sys\nprint(sys.argv)\nraise SystemExit(sys.argv[1])\n")
    done = sandbox("code", str(program), "--", "boom", "-x", "--y")
    assert done.stdout == b"['job.py', 'boom', '-x', '--y']\n", done
    assert done.returncode == 1 and done.stderr == b"boom\n"
    broken = tmp_path / "broken.py"
    broken.write_text("1 / 0\n")
    assert b'File "/workspace/broken.py", line 1' in sandbox("code", str(broken)).stderr
    clash = sandbox("code", "--file", f"{program}:job.py", str(program))
    assert clash.returncode == 125
    assert b"--file: 'job.py' is the program's own name in /workspace" in clash.stderr
    piped = sandbox("code", "-", "--", "a", stdin=b"import sys; print(sys.argv)")
    assert piped.stdout == b"['main.py', 'a']\n"


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        (("{job}", "--timeout", "1"), b"sandbox: '--timeout' after FILE: the sandbox's options go"),
        (("{job}", "x", "--", "y"), b"sandbox: 'x' after FILE"),
        (("--file", "{job}:./job.py", "{job}"), b"--file: 'job.py' is the program's own name"),
        (("--file", "{job}:sub/../job.py", "{job}"), b"--file: 'job.py' is the program's own"),
        (("--file", "{job}:a", "--file", "{job}:./a", "{job}"), b"'./a' is another --file's"),
        (("--file", "{job}:sub/", "{job}"), b"files: 'sub/': names a directory, not a file"),
        (("--", "{job}"), b"arguments after `--` need FILE, or - for stdin, before the `--`"),
        (("--json", "-", "--json"), b"'--json' after FILE"),
    ],
)
def test_code_never_drops_a_flag_or_a_file_without_a_word(
    tmp_path: Path, args: tuple[str, ...], refused: bytes
) -> None:
    """A flag of ours after FILE would have gone to the program, and the run on without it;
    two files of one name in /workspace, one of them lost."""
    job = tmp_path / "job.py"
    job.write_text("print('ran')\n")
    done = sandbox("code", *(arg.format(job=job) for arg in args))
    assert (done.returncode, done.stdout) == (125, b""), done
    assert refused in done.stderr


def test_code_on_a_terminal_says_it_reads_stdin() -> None:
    pid, terminal = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "stockade", "code"])
    seen = b""
    while b"Ctrl-D" not in seen:
        seen += os.read(terminal, 1024)
    os.write(terminal, b"print(6 * 7)\n\x04")
    with contextlib.suppress(OSError):  # EIO once the command is gone
        while chunk := os.read(terminal, 1024):
            seen += chunk
    os.close(terminal)
    os.waitpid(pid, 0)
    assert b"sandbox: reading the program from stdin (end it with Ctrl-D)" in seen
    assert b"42" in seen


def test_policies_show_prints_a_complete_valid_policy(tmp_path: Path) -> None:
    from stockade import Policy
    from stockade.policy.source import builtin_policies

    for name in builtin_policies():
        done = sandbox("policies", "--show", name)
        assert done.returncode == 0, done
        assert Policy.from_toml(done.stdout.decode()) == Policy.load(name)
        assert b"stack = " in done.stdout and b"readonly = " in done.stdout  # every key
    assert sandbox("policies", "--show", "nope").returncode == 125


def test_best_effort_by_flag_and_by_policy() -> None:
    """As root the cgroup is there, so best_effort changes nothing but is accepted; what it
    does without delegation is tests/rootless's."""
    for args in (("--cgroups", "best_effort"), ("--policy", "best_effort")):
        done = sandbox("run", "--json", *args, "--", "true")
        assert json.loads(done.stdout)["status"] == "ok", done
    assert b"best_effort " in sandbox("policies").stdout


def test_output_dir_takes_a_file_whose_name_is_as_long_as_names_go(tmp_path: Path) -> None:
    name = "n" * 250  # the longest a name may be, less what the run's own files need
    code = f"open({name!r}, 'w').write('long')"
    done = sandbox("code", "--output-dir", str(tmp_path), "-", stdin=code.encode())
    assert done.returncode == 0, done
    assert (tmp_path / name).read_text() == "long"

"""No privilege: an unprivileged uid, no capabilities in any set, no_new_privs, a seccomp
filter, its own session; and the kernel attack surface refused end to end."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios

import pytest

from stockade import Policy, PolicyError, Sandbox

STATUS = "print(open('/proc/self/status').read())"


def _status(box: Sandbox) -> dict[str, str]:
    result = box.run(["python3", "-c", STATUS])
    pairs = (line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    return {key: value.strip() for key, value in pairs}


def test_runs_as_its_own_uid_with_no_capabilities(box: Sandbox) -> None:
    status = _status(box)
    uid = status["Uid"].split()[0]
    assert 0x7000_0000 <= int(uid) < 0x7001_0000  # the sandbox's own, from process.uid_range
    assert status["Uid"].split() == [uid] * 4
    assert status["Gid"].split() == [uid] * 4
    assert status["Groups"] == ""
    for capability_set in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capability_set], 16) == 0, capability_set
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"


def test_policy_uid_is_used(box: Sandbox) -> None:
    other = Sandbox(box.policy.override(uid=4242, gid=4343))
    status = _status(other)
    assert status["Uid"].split()[0] == "4242"
    assert status["Gid"].split()[0] == "4343"


def test_setuid_zero_fails(box: Sandbox) -> None:
    result = box.run(["python3", "-c", "import os; os.setuid(0)"])
    assert "PermissionError" in result.stderr, result


def test_own_session_without_terminal(box: Sandbox) -> None:
    script = "import os; print(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())"
    result = box.run(["python3", "-c", script])
    assert result.stdout.split() == ["True", "True"], result


SYSCALL = """
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
number = int(sys.argv[1]); args = [int(a, 0) for a in sys.argv[2:]]
result = libc.syscall(number, *[ctypes.c_long(a) for a in args])
print(errno.errorcode.get(ctypes.get_errno(), "OK") if result == -1 else "OK")
"""

# x86_64 numbers; the unit tests check the filter's own table on every arch.
REFUSED = {
    "mount": (165, "0", "0", "0", "0", "0"),
    "umount2": (166, "0", "0"),
    "pivot_root": (155, "0", "0"),
    "chroot": (161, "0"),
    "unshare(NEWUSER)": (272, "0x10000000"),
    "unshare(NEWNET)": (272, "0x40000000"),
    "setns": (308, "0", "0"),
    "ptrace(TRACEME)": (101, "0", "0", "0", "0"),
    "process_vm_readv": (310, "1", "0", "0", "0", "0", "0"),
    "bpf": (321, "0", "0", "0"),
    "perf_event_open": (298, "0", "0", "0", "0", "0"),
    "userfaultfd": (323, "0"),
    "io_uring_setup": (425, "1", "0"),
    "keyctl": (250, "0", "0"),
    "add_key": (248, "0", "0", "0", "0", "0"),
    "request_key": (249, "0", "0", "0", "0"),
    "init_module": (175, "0", "0", "0"),
    "finit_module": (313, "0", "0", "0"),
    "kexec_load": (246, "0", "0", "0", "0"),
    "reboot": (169, "0", "0", "0", "0"),
    "swapon": (167, "0", "0"),
    "settimeofday": (164, "0", "0"),
    "clock_settime": (227, "0", "0"),
    "personality(READ_IMPLIES_EXEC)": (135, "0x0400000"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_kernel_surface_is_refused(box: Sandbox, name: str) -> None:
    number, *args = REFUSED[name]
    result = box.run(["python3", "-c", SYSCALL, str(number), *args])
    assert result.stdout.strip() == "EPERM", (name, result)


@pytest.mark.parametrize(
    "name,call", [("getpid", (39,)), ("personality(query)", (135, "0xffffffff"))]
)
def test_ordinary_syscalls_work(box: Sandbox, name: str, call: tuple) -> None:
    number, *args = call
    result = box.run(["python3", "-c", SYSCALL, str(number), *args])
    assert result.stdout.strip() == "OK", (name, result)


# Set the caller's terminal's line discipline to N_NULL, which would drop all its later
# input and output, for the caller and everyone else on it.
N_NULL = "import fcntl, struct, termios; fcntl.ioctl(0, termios.TIOCSETD, struct.pack('i', 27))"


@pytest.mark.parametrize("mode", ["run", "run_code", "pooled", "start"])
def test_the_callers_terminal_is_never_handed_over(mode: str) -> None:
    """In every mode, a terminal given as stdin is refused with an error naming `stdin`,
    before anything starts: the run never gets to touch it."""
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    box = Sandbox(Policy.load("default").override(timeout=20), pool=1 if mode == "pooled" else 0)
    calls = {
        "run": lambda: box.run(["python3", "-c", N_NULL], stdin=slave),
        "run_code": lambda: box.run_code(N_NULL, stdin=slave, memory="256M"),  # fresh
        "pooled": lambda: box.run_code(N_NULL, stdin=slave),
        "start": lambda: box.start(["python3", "-c", N_NULL], stdin=slave),
    }
    try:
        with pytest.raises(PolicyError, match=r"stdin.*terminal"):
            calls[mode]()
        line_discipline = fcntl.ioctl(slave, termios.TIOCGETD, bytes(4))
        assert struct.unpack("i", line_discipline) == (0,)  # N_TTY, as it was
        assert termios.tcgetattr(slave) == before
    finally:
        box.close()
        os.close(master)
        os.close(slave)


def test_a_terminal_behind_an_o_path_fd_is_refused_too() -> None:
    """isatty() says no for an O_PATH fd, and the workload would reopen the terminal it names
    through /proc/self/fd/0: such an fd (or a directory, or a write-only fd) is refused."""
    master, slave = pty.openpty()
    handles = {
        "O_PATH terminal": os.open(os.ttyname(slave), os.O_PATH),
        "directory": os.open("/", os.O_RDONLY | os.O_DIRECTORY),
        "write-only": os.open("/dev/null", os.O_WRONLY),
    }
    try:
        with Sandbox(Policy.load("default").override(timeout=20)) as box:
            for fd in handles.values():
                with pytest.raises(PolicyError, match=rf"stdin.*fd {fd} is not open for reading"):
                    box.run(["true"], stdin=fd)
    finally:
        for fd in (master, slave, *handles.values()):
            os.close(fd)

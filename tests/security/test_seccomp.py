"""Security contract, seccomp clause: the real kernel refuses what the profile forbids.

Each probe runs in a forked child that sets no_new_privs, loads the profile and tries one thing,
then reports through its exit code (pyseccomp's tests/test_filter_load.py does "fork, load,
assert"). Every forbidden probe first runs *without* the filter and must get a different answer
there, so each test shows that the filter is what refuses the call. The arguments are chosen so
that the unfiltered run is harmless even as root (bad magic, missing paths, invalid flags).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import termios
import traceback
from collections.abc import Callable
from pathlib import Path

import pyseccomp
import pytest

from stockade.kernel import seccomp
from stockade.kernel import syscalls as _syscalls

Probe = Callable[[Path], int]  # runs in the child; returns 0 or an errno (or execs)

NOT_FILTERED = 254  # exit code: after load_filters the child was not under a seccomp filter
CRASHED = 255  # exit code: the probe raised; the traceback is on stderr
SIGSYS = -signal.SIGSYS  # os.waitstatus_to_exitcode of a process killed by SIGSYS

MISSING = b"/nonexistent/stockade"
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def sys_call(name: str, *args: object) -> int:
    """The raw syscall `name` of this arch; 0 on success, else its errno."""
    nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    assert nr >= 0, f"{name} does not exist on this arch"
    c_args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    return ctypes.get_errno() if _libc.syscall(ctypes.c_long(nr), *c_args) == -1 else 0


def _seccomp_mode() -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Seccomp:"):
            return line.split()[1]
    return "?"


def _child(probe: Probe, tmp: Path, filtered: bool, programs: tuple[bytes, ...]) -> int:
    if filtered:
        _syscalls.prctl(_syscalls.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.load_filters(programs)
        if _seccomp_mode() != "2":
            return NOT_FILTERED
    return probe(tmp)


def run_child(probe: Probe, tmp: Path, *, filtered: bool = True) -> int:
    """Fork, run `probe` in the child (under the profile if `filtered`); its exit code, or
    -signal if it was killed."""
    programs = seccomp.compile_filters()  # before fork, like the real spawn
    pid = os.fork()
    if pid == 0:
        code = CRASHED
        try:
            code = _child(probe, tmp, filtered, programs)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return {NOT_FILTERED: "not filtered", CRASHED: "probe crashed"}.get(
        code, errno.errorcode.get(code, str(code))
    )


# --- forbidden: probes --------------------------------------------------------------------------


def _on_controlling_pty(cmd: int) -> Probe:
    """ioctl(cmd) on a pty that is the child's controlling terminal, where TIOCSTI works."""

    def probe(tmp: Path) -> int:
        _master, slave = os.openpty()
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        return sys_call("ioctl", slave, cmd, ctypes.byref(ctypes.c_char(b"\x00")))

    return probe


def _clone(flag: int) -> Probe:
    # CLONE_SIGHAND without CLONE_VM makes the unfiltered call fail with EINVAL before any
    # process is created; the filter must answer EPERM first, because of the namespace flag.
    return lambda tmp: sys_call("clone", flag | 0x800 | signal.SIGCHLD, 0, 0, 0, 0)


def _socket(family: int, kind: int, proto: int = 0) -> Probe:
    return lambda tmp: sys_call("socket", family, kind, proto)


def _unshare_in_grandchild(tmp: Path) -> int:
    pid = os.fork()  # the filter is inherited by everything the workload creates
    if pid == 0:
        os._exit(sys_call("unshare", _syscalls.CLONE_NEWUSER))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


_NAMESPACE_FLAGS = {
    "newns": _syscalls.CLONE_NEWNS,
    "newuser": _syscalls.CLONE_NEWUSER,
    "newpid": _syscalls.CLONE_NEWPID,
    "newnet": _syscalls.CLONE_NEWNET,
    "newuts": _syscalls.CLONE_NEWUTS,
    "newipc": _syscalls.CLONE_NEWIPC,
    "newcgroup": _syscalls.CLONE_NEWCGROUP,
    "newtime": 0x80,
}
_timespec = (ctypes.c_long * 2)(0, 0)
_HIGH = (0x1_0000_0000, 0xFFFF_FFFF_0000_0000, 0x8000_0000_0000_0000)

FORBIDDEN: list[object] = [
    pytest.param(lambda tmp: sys_call("mount", b"none", MISSING, b"tmpfs", 0, None), id="mount"),
    pytest.param(lambda tmp: sys_call("umount2", MISSING, 0), id="umount2"),
    pytest.param(lambda tmp: sys_call("pivot_root", MISSING, MISSING), id="pivot_root"),
    pytest.param(lambda tmp: sys_call("chroot", MISSING), id="chroot"),
    pytest.param(lambda tmp: sys_call("unshare", _syscalls.CLONE_NEWUSER), id="unshare-user"),
    pytest.param(lambda tmp: sys_call("unshare", _syscalls.CLONE_NEWNS), id="unshare-mnt"),
    pytest.param(_unshare_in_grandchild, id="unshare-in-grandchild"),
    pytest.param(lambda tmp: sys_call("setns", -1, 0), id="setns"),
    *(pytest.param(_clone(flag), id=f"clone-{name}") for name, flag in _NAMESPACE_FLAGS.items()),
    pytest.param(lambda tmp: sys_call("ptrace", 0, 0, 0, 0), id="ptrace-traceme"),
    pytest.param(
        lambda tmp: sys_call("process_vm_readv", os.getpid(), None, 0, None, 0, 0),
        id="process_vm_readv",
    ),
    pytest.param(
        lambda tmp: sys_call("process_vm_writev", os.getpid(), None, 0, None, 0, 0),
        id="process_vm_writev",
    ),
    pytest.param(lambda tmp: sys_call("bpf", 0x7FFF, None, 0), id="bpf"),
    pytest.param(lambda tmp: sys_call("perf_event_open", None, 0, -1, -1, 0), id="perf_event_open"),
    pytest.param(lambda tmp: sys_call("userfaultfd", os.O_CLOEXEC), id="userfaultfd"),
    pytest.param(lambda tmp: sys_call("io_uring_setup", 1, None), id="io_uring_setup"),
    pytest.param(lambda tmp: sys_call("io_uring_enter", -1, 0, 0, 0, None, 0), id="io_uring_enter"),
    pytest.param(lambda tmp: sys_call("keyctl", 0xDEAD, 0, 0, 0, 0), id="keyctl"),
    pytest.param(lambda tmp: sys_call("add_key", None, None, None, 0, 0), id="add_key"),
    pytest.param(lambda tmp: sys_call("request_key", None, None, None, 0), id="request_key"),
    pytest.param(lambda tmp: sys_call("init_module", None, 0, b""), id="init_module"),
    pytest.param(lambda tmp: sys_call("finit_module", -1, b"", 0), id="finit_module"),
    pytest.param(lambda tmp: sys_call("delete_module", b"stockade_none", 0), id="delete_module"),
    # bad flags and too many segments: never reaches "load" (nor "unload", which 0 segments is)
    pytest.param(lambda tmp: sys_call("kexec_load", 0, 1000, None, 0xDEAD0000), id="kexec_load"),
    pytest.param(lambda tmp: sys_call("reboot", 0, 0, 0, None), id="reboot-bad-magic"),
    pytest.param(lambda tmp: sys_call("swapon", MISSING, 0), id="swapon"),
    pytest.param(lambda tmp: sys_call("swapoff", MISSING), id="swapoff"),
    pytest.param(lambda tmp: sys_call("settimeofday", None, None), id="settimeofday"),
    pytest.param(
        lambda tmp: sys_call("clock_settime", 1, ctypes.byref(_timespec)), id="clock_settime"
    ),
    pytest.param(lambda tmp: sys_call("adjtimex", None), id="adjtimex"),
    pytest.param(lambda tmp: sys_call("personality", 0x0040008), id="personality-no-aslr"),
    pytest.param(lambda tmp: sys_call("personality", 0x0400000), id="personality-exec"),
    pytest.param(_on_controlling_pty(seccomp.TIOCSTI), id="ioctl-TIOCSTI"),
    pytest.param(_on_controlling_pty(seccomp.TIOCLINUX), id="ioctl-TIOCLINUX"),
    *(
        pytest.param(_on_controlling_pty(high | cmd), id=f"ioctl-{name}-{high:#x}")
        for high in _HIGH
        for name, cmd in (("TIOCSTI", seccomp.TIOCSTI), ("TIOCLINUX", seccomp.TIOCLINUX))
    ),
    pytest.param(_socket(socket.AF_NETLINK, socket.SOCK_RAW), id="socket-netlink"),
    pytest.param(_socket(socket.AF_PACKET, socket.SOCK_RAW), id="socket-packet"),
    pytest.param(_socket(socket.AF_INET, socket.SOCK_DGRAM), id="socket-udp"),
    pytest.param(_socket(socket.AF_INET6, socket.SOCK_DGRAM), id="socket-udp6"),
    pytest.param(
        _socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC), id="socket-udp-cloexec"
    ),
    pytest.param(_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), id="socket-raw"),
    pytest.param(
        _socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), id="socket-icmp-ping"
    ),
    pytest.param(_socket(socket.AF_VSOCK, socket.SOCK_STREAM), id="socket-vsock"),
    pytest.param(
        lambda tmp: sys_call("socketpair", socket.AF_INET, socket.SOCK_STREAM, 0, None),
        id="socketpair-inet",
    ),
    pytest.param(
        lambda tmp: sys_call(
            "mknodat", -100, bytes(tmp / "null"), 0o020600, os.makedev(1, 3)
        ),  # AT_FDCWD, S_IFCHR: a device node
        id="mknodat-chardev",
    ),
]


@pytest.mark.parametrize("probe", FORBIDDEN)
def test_forbidden_call_fails_with_eperm(probe: Probe, tmp_path: Path) -> None:
    _assert_refused(probe, tmp_path, errno.EPERM)


def test_clone3_fails_with_enosys_so_glibc_falls_back(tmp_path: Path) -> None:
    _assert_refused(lambda tmp: sys_call("clone3", None, 0), tmp_path, errno.ENOSYS)


def _assert_refused(probe: Probe, tmp: Path, expected: int) -> None:
    unfiltered = run_child(probe, tmp, filtered=False)
    assert unfiltered != CRASHED, "the probe itself is broken"
    if unfiltered == expected:
        pytest.skip(f"{_describe(expected)} even without the filter here: cannot tell it apart")
    assert _describe(run_child(probe, tmp)) == _describe(expected)


# --- forbidden: foreign architectures, from compiled C ------------------------------------------

C_PROGRAMS = {
    # getpid through the x32 ABI: syscall number | __X32_SYSCALL_BIT, same audit arch as x86_64
    "x32": "#include <unistd.h>\n#include <sys/syscall.h>\n"
    "int main(void) { return syscall(0x40000000L | SYS_getpid) == -1 ? 2 : 0; }\n",
    # getpid (20 on i386) through int 0x80: the kernel reports AUDIT_ARCH_I386
    "i386": "int main(void) { long r;\n"
    '  __asm__ volatile ("int $0x80" : "=a"(r) : "a"(20L) : "memory");\n'
    "  return r > 0 ? 0 : 2; }\n",
}


@pytest.fixture(scope="module")
def c_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if platform.machine() != "x86_64":
        pytest.skip("x32 and int 0x80 exist only on x86_64")
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed: cannot build the x32 / i386 probes")
    out = tmp_path_factory.mktemp("seccomp-c")
    for name, source in C_PROGRAMS.items():
        (out / f"{name}.c").write_text(source)
        subprocess.run([gcc, "-O0", "-o", out / name, out / f"{name}.c"], check=True)
    return {name: out / name for name in C_PROGRAMS}


@pytest.mark.parametrize("abi", sorted(C_PROGRAMS))
def test_foreign_abi_syscall_kills_with_sigsys(
    abi: str, c_binaries: dict[str, Path], tmp_path: Path
) -> None:
    binary = str(c_binaries[abi])
    probe: Probe = lambda tmp: os.execv(binary, [binary])  # noqa: E731
    unfiltered = run_child(probe, tmp_path, filtered=False)
    if unfiltered < 0:
        pytest.skip(f"{abi} syscalls never reach seccomp here: {_describe(unfiltered)} without it")
    assert unfiltered in (0, 2)
    assert _describe(run_child(probe, tmp_path)) == _describe(SIGSYS)


# --- allowed: the filter is not "deny all" ------------------------------------------------------


def _exec_to(out: Path, *argv: str) -> Probe:
    def probe(tmp: Path) -> int:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.execv(argv[0], list(argv))

    return probe


PYTHON_SCRIPT = """
import subprocess, threading
box = []
thread = threading.Thread(target=box.append, args=("thread",))
thread.start()
thread.join()
child = subprocess.run(["/bin/sh", "-c", "echo sub"], capture_output=True, text=True, check=True)
print(box[0], child.stdout.strip())
"""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(("/bin/sh", "-c", "echo ok | cat"), "ok\n", id="sh-pipeline"),
        pytest.param(
            ("/bin/bash", "-c", "x=$(echo ok); cat <<< $x; wait"), "ok\n", id="bash-subshell"
        ),
        pytest.param((sys.executable, "-c", PYTHON_SCRIPT), "thread sub\n", id="python-threads"),
        pytest.param(
            ("/usr/bin/python3", "-I", "-c", PYTHON_SCRIPT), "thread sub\n", id="system-python3"
        ),
    ],
)
def test_ordinary_programs_run_under_the_filter(
    argv: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    if not os.path.exists(argv[0]):
        pytest.skip(f"{argv[0]} not installed")
    out = tmp_path / "stdout"
    assert run_child(_exec_to(out, *argv), tmp_path) == 0
    assert out.read_text() == expected


def _tcp_roundtrip(tmp: Path) -> int:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    client.sendall(b"x")
    return 0 if conn.recv(1) == b"x" else 1  # the child exits: no need to close


def _socketpair_roundtrip(tmp: Path) -> int:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left.sendall(b"x")
    return 0 if right.recv(1) == b"x" else 1


def _harmless_ioctls(tmp: Path) -> int:
    _master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCGWINSZ, b"\x00" * 8)
    read_end, write_end = os.pipe()
    os.write(write_end, b"abc")
    pending = fcntl.ioctl(read_end, termios.FIONREAD, b"\x00" * 4)
    return 0 if int.from_bytes(pending, sys.byteorder) == 3 else 1


def _fork_and_wait(tmp: Path) -> int:
    pid = os.fork()  # clone(2) without namespace flags
    if pid == 0:
        os._exit(7)
    return 0 if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7 else 1


def _mkfifo(tmp: Path) -> int:
    os.mkfifo(tmp / "fifo")
    return 0


@pytest.mark.parametrize(
    "probe",
    [
        pytest.param(_tcp_roundtrip, id="tcp-loopback"),
        pytest.param(
            _socket(socket.AF_INET6, socket.SOCK_STREAM | socket.SOCK_NONBLOCK), id="socket-tcp6"
        ),
        pytest.param(_socket(socket.AF_UNIX, socket.SOCK_DGRAM), id="socket-unix-dgram"),
        pytest.param(_socketpair_roundtrip, id="socketpair-unix"),
        pytest.param(_harmless_ioctls, id="ioctl-TIOCGWINSZ-FIONREAD"),
        pytest.param(_fork_and_wait, id="fork"),
        pytest.param(lambda tmp: sys_call("personality", 0xFFFF_FFFF), id="personality-query"),
        pytest.param(_mkfifo, id="mkfifo"),
    ],
)
def test_allowed_call_works(probe: Probe, tmp_path: Path) -> None:
    assert _describe(run_child(probe, tmp_path)) == _describe(0)


def test_detect_reports_seccomp_usable() -> None:
    usable, reason = seccomp.detect()
    assert usable, reason

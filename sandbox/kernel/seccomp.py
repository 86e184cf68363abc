"""The seccomp profile: an allowlist in the style of Docker's default profile, kept as data.

Pure half: `compile_filters()` turns the tables below into classic-BPF programs with libseccomp
(through pyseccomp) and loads nothing. Privileged half: `load_filters()` runs in the child, after
no_new_privs, as the last step before execve. `detect()` is what `sandbox doctor` reports.

Two programs are built, because one libseccomp filter cannot say "allow ioctl unless the command
is X": a conditional rule whose action equals the default action is refused (EACCES), and a
conditional rule next to an unconditional one for the same syscall is silently dropped (both
checked against libseccomp 2.5). So program 1 is the allowlist (default EPERM) and program 2 is
default-ALLOW and refuses only argument-specific cases. The kernel runs every loaded filter and
keeps the strictest answer (KILL > ERRNO > ALLOW), so stacking them means "allowed by 1 and not
refused by 2".

Architectures: only the native one is in the filter; anything else (i386 through `int 0x80`)
gets KILL_PROCESS. x32 calls (nr | 0x40000000) report the x86_64 audit arch, but libseccomp's
native x86_64 filter already sends nr >= 0x40000000 to the bad-arch action (checked in its BPF
output; tests/security/test_seccomp.py keeps it true), so no extra rule is needed.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import importlib.util
import os
import struct
from types import ModuleType
from typing import TYPE_CHECKING

from stockade import disk_cache as cache
from stockade.errors import UnsupportedError
from stockade.kernel import syscalls as _syscalls

if TYPE_CHECKING:
    from pyseccomp import SyscallFilter

# --- the rules (data) ---------------------------------------------------------------------------

# Allowed unconditionally on every supported arch (x86_64, aarch64). Docker's default list minus
# what the security contract refuses (see FORBIDDEN) and minus modify_ldt, fanotify_mark (useless
# without fanotify_init), name_to_handle_at, pidfd_getfd, process_madvise and kcmp (ptrace-like),
# and minus inotify: a watch on the shared read-only runtime files sees other runs' opens, and
# instances are counted per uid across runs (one run could starve the others).
ALLOW: tuple[str, ...] = (
    # files and directories
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "openat", "openat2", "close", "close_range", "lseek", "dup", "dup3", "fcntl",
    "flock", "fstat", "newfstatat", "statx", "statfs", "fstatfs", "faccessat", "faccessat2",
    "getdents64", "getcwd", "chdir", "fchdir", "mkdirat", "unlinkat", "renameat", "renameat2",
    "linkat", "symlinkat", "readlinkat", "fchmod", "fchmodat", "fchown", "fchownat", "umask",
    "utimensat", "truncate", "ftruncate", "fallocate", "fadvise64", "readahead", "fsync",
    "fdatasync", "sync", "syncfs", "sync_file_range", "copy_file_range", "sendfile", "splice",
    "tee", "vmsplice", "memfd_create", "getxattr", "lgetxattr", "fgetxattr", "listxattr",
    "llistxattr", "flistxattr", "setxattr", "lsetxattr", "fsetxattr", "removexattr",
    "lremovexattr", "fremovexattr",
    # memory
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock",
    "mlock2", "mlockall", "munlock", "munlockall", "remap_file_pages", "membarrier",
    "pkey_alloc", "pkey_free", "pkey_mprotect",
    # processes, threads (clone is in ALLOW_IF, clone3 in ERRNO)
    "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "kill", "tkill", "tgkill",
    "getpid", "getppid", "gettid", "getpgid", "setpgid", "getsid", "setsid", "set_tid_address",
    "set_robust_list", "get_robust_list", "futex", "futex_waitv", "rseq", "pidfd_open",
    "pidfd_send_signal", "process_mrelease", "prctl", "seccomp",  # stacking filters only narrows
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
    "sched_getscheduler", "sched_setscheduler", "sched_getattr", "sched_setattr",
    "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval", "getcpu",
    "getpriority", "setpriority", "ioprio_get", "ioprio_set", "getrlimit", "setrlimit",
    "getrusage", "times", "sysinfo", "uname", "getrandom",
    # credentials (no capabilities are left, so these can only drop)
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid",
    "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid",
    "setfsgid", "capget", "capset", "landlock_create_ruleset", "landlock_add_rule",
    "landlock_restrict_self",
    # signals and time
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "restart_syscall",
    "signalfd4", "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday",
    "getitimer", "setitimer", "timer_create", "timer_delete", "timer_settime", "timer_gettime",
    "timer_getoverrun", "timerfd_create", "timerfd_settime", "timerfd_gettime",
    # polling, pipes, events, IPC
    "pipe2", "ppoll", "pselect6", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2",
    "eventfd2", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
    "mq_getsetattr", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop",
    "semctl", "shmget", "shmat", "shmdt", "shmctl",
    # sockets (socket and socketpair are in ALLOW_IF)
    "bind", "connect", "listen", "accept", "accept4", "getsockname", "getpeername",
    "getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
    "recvmmsg", "shutdown",
    # ioctl: allowed here, TIOCSTI / TIOCLINUX refused by program 2 (DENY_IF)
    "ioctl",
)  # fmt: skip

# The pre-*at calls x86_64 still has and aarch64 never had (libseccomp resolves them to negative
# pseudo-numbers there), plus arch_prctl, which x86_64 glibc needs to set up TLS.
ALLOW_X86_64: tuple[str, ...] = (
    "open", "creat", "stat", "lstat", "access", "getdents", "mkdir", "rmdir", "unlink", "rename",
    "link", "symlink", "readlink", "chmod", "chown", "lchown", "utime", "utimes", "futimesat",
    "dup2", "pipe", "poll", "select", "epoll_create", "epoll_wait", "eventfd", "signalfd",
    "fork", "vfork", "alarm", "pause", "time", "getpgrp", "arch_prctl",
    "get_thread_area", "set_thread_area",
)  # fmt: skip

# Refused (by the EPERM default): the kernel attack surface of the security contract. Not used to
# build anything; tests/unit/test_seccomp_rules.py checks that none of these is ever allowed.
# io_uring is here although it only does I/O: its operations bypass seccomp entirely (e.g.
# IORING_OP_SOCKET creates sockets without socket(2); isolate and Codex block it for that).
FORBIDDEN: tuple[str, ...] = (
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "fsopen", "fsmount",
    "fsconfig", "fspick", "open_tree", "move_mount", "mount_setattr", "ptrace",
    "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "bpf", "perf_event_open",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key",
    "request_key", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "reboot", "swapon", "swapoff", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "acct", "quotactl", "quotactl_fd", "lookup_dcookie",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "syslog", "iopl", "ioperm",
    "vhangup", "nfsservctl", "uselib", "modify_ldt", "sethostname", "setdomainname",
    # Linux AIO: its contexts come out of one allowance for the whole machine (fs.aio-max-nr),
    # which one run could take, leaving every host program's io_setup failing.
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
)  # fmt: skip

_LOW32 = 0xFFFF_FFFF  # int arguments: the kernel reads only the low 32 bits of the register
_AF_UNIX, _AF_INET, _AF_INET6, _SOCK_STREAM, _SOCK_TYPE_MASK = 1, 2, 10, 1, 0xF
_IPPROTO_TCP = 6  # or 0, its default: not MPTCP (262), a TCP stack of its own
_S_IFMT, _S_IFIFO = 0o170000, 0o010000
_CLONE_NEWTIME = 0x80  # clone3/unshare only; in clone(2) it lands in the exit-signal byte
_CLONE_NAMESPACES = (
    _syscalls.CLONE_NEWNS | _syscalls.CLONE_NEWUTS | _syscalls.CLONE_NEWIPC
    | _syscalls.CLONE_NEWUSER | _syscalls.CLONE_NEWPID | _syscalls.CLONE_NEWNET
    | _syscalls.CLONE_NEWCGROUP | _CLONE_NEWTIME
)  # fmt: skip
# personality(2): PER_LINUX, PER_LINUX32, UNAME26, both, and 0xffffffff (query). Docker's list;
# the point is refusing ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC and friends.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFF_FFFF)
TIOCSTI, TIOCLINUX = 0x5412, 0x541C  # asm-generic values, same on x86_64 and aarch64

# (argument index, mask, value): the argument matches when `arg & mask == value`.
Match = tuple[int, int, int]

# Program 1: allowed only when every Match of a row holds (rows for one syscall are OR-ed).
ALLOW_IF: tuple[tuple[str, tuple[Match, ...]], ...] = (
    ("clone", ((0, _CLONE_NAMESPACES, 0),)),  # threads and fork, never new namespaces
    ("socket", ((0, _LOW32, _AF_UNIX),)),
    # SOCK_NONBLOCK / SOCK_CLOEXEC are or-ed into the type, hence the 0xf mask
    *(
        ("socket", ((0, _LOW32, family), (1, _SOCK_TYPE_MASK, _SOCK_STREAM), (2, _LOW32, proto)))
        for family in (_AF_INET, _AF_INET6)
        for proto in (0, _IPPROTO_TCP)
    ),
    ("socketpair", ((0, _LOW32, _AF_UNIX),)),
    ("mknod", ((1, _S_IFMT, _S_IFIFO),)),  # mkfifo only; no device nodes
    # Its own limits only (pid 0, as glibc's setrlimit asks): the run's init and a pool's
    # zygote share the workload's uid, and lowering theirs would end or cripple them.
    ("prlimit64", ((0, _LOW32, 0),)),
    ("mknodat", ((2, _S_IFMT, _S_IFIFO),)),
    *(("personality", ((0, _LOW32, value),)) for value in _PERSONALITIES),
)

# Program 1: refused with a chosen errno. clone3 gets ENOSYS so glibc falls back to clone(2),
# whose flags (unlike clone3's, which sit in memory) the filter can read.
ERRNO: tuple[tuple[str, int], ...] = (("clone3", errno.ENOSYS),)

# Program 2: refused with EPERM. The command is compared on its low 32 bits only: the kernel
# truncates it to unsigned int, so 0x1_0000_5412 *is* TIOCSTI (CVE-2019-10063, flatpak).
DENY_IF: tuple[tuple[str, tuple[Match, ...]], ...] = (
    ("ioctl", ((1, _LOW32, TIOCSTI),)),  # pushes input into the terminal: escapes to the host
    ("ioctl", ((1, _LOW32, TIOCLINUX),)),  # console selection paste: the same attack
)

# --- building -----------------------------------------------------------------------------------


def allowed_syscalls() -> tuple[str, ...]:
    """The unconditional allowlist for this machine's architecture."""
    return ALLOW + (ALLOW_X86_64 if os.uname().machine == "x86_64" else ())


def _libseccomp() -> ModuleType:
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as exc:  # pyseccomp raises RuntimeError if absent
        raise UnsupportedError(
            f"libseccomp cannot be loaded ({exc})",
            "install libseccomp2 (apt install libseccomp2) and pyseccomp",
        ) from exc
    return pyseccomp


def _known(sc: ModuleType, name: str) -> bool:
    # Negative: a pseudo-number for a call this arch lacks, or -1 for one libseccomp doesn't know.
    return sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0


def _add(
    sc: ModuleType, flt: SyscallFilter, action: int, name: str, matches: tuple[Match, ...] = ()
) -> None:
    args = (sc.Arg(index, sc.MASKED_EQ, mask, value) for index, mask, value in matches)
    flt.add_rule(action, name, *args)


def _export(flt: SyscallFilter) -> bytes:
    import tempfile  # only to compile: a run served from the cache never needs it

    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


def _allowlist_program(sc: ModuleType) -> bytes:
    flt = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    # An allow rule for a call this arch or libseccomp lacks is skipped (that only narrows);
    # refusals never are: an unknown name there raises rather than silently allowing.
    for name in filter(functools.partial(_known, sc), allowed_syscalls()):
        _add(sc, flt, sc.ALLOW, name)
    for name, matches in ALLOW_IF:
        if _known(sc, name):
            _add(sc, flt, sc.ALLOW, name, matches)
    for name, err in ERRNO:
        _add(sc, flt, sc.ERRNO(err), name)
    return _export(flt)


def _denylist_program(sc: ModuleType) -> bytes:
    flt = sc.SyscallFilter(sc.ALLOW)
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name, matches in DENY_IF:
        _add(sc, flt, sc.ERRNO(errno.EPERM), name, matches)
    return _export(flt)


@functools.cache
def compile_filters() -> tuple[bytes, ...]:
    """The default profile as BPF programs, to load in order. Loads nothing into the kernel.

    Served from the on-disk cache below when a trusted entry for these rules exists."""
    key = _cache_key()
    if key is not None and (cached := _cache_read(key)) is not None:
        return cached
    programs = _compile()
    if key is not None:
        _cache_write(key, programs)
    return programs


def _compile() -> tuple[bytes, ...]:
    sc = _libseccomp()
    try:
        return (_allowlist_program(sc), _denylist_program(sc))
    except OSError as exc:
        raise UnsupportedError(
            f"libseccomp could not build the seccomp filter ({exc})",
            "needs libseccomp >= 2.5 (knows clone3) and Linux >= 4.14 (KILL_PROCESS)",
        ) from exc


# --- the on-disk cache of compiled programs ------------------------------------------------------
#
# Building the programs costs a process more than libseccomp's few milliseconds of work:
# importing pyseccomp runs `ldconfig -p` twice (ctypes.util.find_library), 5-40 ms, and every
# `sandbox` command paid it. The programs depend only on the rules, on libseccomp (and the
# pyseccomp that drives it), on the architecture and, through libseccomp's API-level probe, on
# the kernel; so they are kept on disk (disk_cache says where, and when an entry is trusted)
# under a SHA-256 of all of those, with this file's own source standing for the rules and the
# code that builds them. An entry also has to hold well formed programs: whole 8-byte
# instructions, at most BPF_MAXINSNS each.

CACHE_ENV = cache.CACHE_ENV
_CACHE_MAGIC = b"stockade-seccomp-v1\n"
_BPF_MAXINSNS = 4096
_PROGRAMS = 2  # what _compile returns: the allowlist, then the argument denylist
_LENGTH = struct.Struct("<I")
_MAX_ENTRY = 4 * _BPF_MAXINSNS * 8
_KEEP = 8  # entries kept: one per libseccomp, kernel and version of these rules in use


class _ScmpVersion(ctypes.Structure):
    _fields_ = (("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint))


def _cache_key() -> str | None:
    """The hash the entry is filed under; None when there is nothing sound to key on (then
    `_compile` runs, and reports a missing libseccomp or pyseccomp as it always did)."""
    try:
        spec = importlib.util.find_spec("pyseccomp")
        if spec is None or spec.origin is None:
            return None
        library = ctypes.CDLL("libseccomp.so.2")
        library.seccomp_version.restype = ctypes.POINTER(_ScmpVersion)
        version = library.seccomp_version().contents
        with open(__file__, "rb") as source:
            code = source.read()
        binding = os.stat(spec.origin)
    except (OSError, ValueError, AttributeError, ImportError):
        return None
    return cache.digest(
        _CACHE_MAGIC,
        (
            repr((ALLOW, ALLOW_X86_64, ALLOW_IF, ERRNO, DENY_IF, allowed_syscalls())).encode(),
            code,
            f"libseccomp {version.major}.{version.minor}.{version.micro}".encode(),
            f"pyseccomp {spec.origin} {binding.st_size} {binding.st_mtime_ns}".encode(),
            f"{os.uname().machine} {os.uname().release}".encode(),
        ),
    )


def _cache_name(key: str) -> str:
    return f"seccomp-{key}.bpf"


def _cache_read(key: str) -> tuple[bytes, ...] | None:
    data = cache.read(_cache_name(key), _CACHE_MAGIC, key, _MAX_ENTRY - 1)
    return None if data is None else _decode_programs(data)


def _cache_encode(key: str, programs: tuple[bytes, ...]) -> bytes:
    return cache.seal(_CACHE_MAGIC, key, _encode_programs(programs))


def _encode_programs(programs: tuple[bytes, ...]) -> bytes:
    lengths = (_LENGTH.pack(len(program)) + program for program in programs)
    return bytes([len(programs)]) + b"".join(lengths)


def _decode_programs(data: bytes) -> tuple[bytes, ...] | None:
    view, programs = memoryview(data), []
    if not view or view[0] != _PROGRAMS:
        return None
    offset = 1
    for _ in range(_PROGRAMS):
        if offset + _LENGTH.size > len(view):
            return None
        (size,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if not 0 < size <= _BPF_MAXINSNS * 8 or size % 8 or offset + size > len(view):
            return None
        programs.append(bytes(view[offset : offset + size]))
        offset += size
    return tuple(programs) if offset == len(view) else None


def _cache_write(key: str, programs: tuple[bytes, ...]) -> None:
    """Best effort: a cache that cannot be written only means compiling next time too."""
    if len(programs) == _PROGRAMS:
        cache.write(_cache_name(key), _CACHE_MAGIC, key, _encode_programs(programs))
        cache.prune("seccomp-", _KEEP)


# --- loading ------------------------------------------------------------------------------------


def load_filters(programs: tuple[bytes, ...]) -> None:
    """Load every program into this process. In the child, after no_new_privs, right before
    execve: from here on only allowlisted calls work, so nothing of the setup may follow."""
    for program in programs:
        _syscalls.seccomp_set_filter(program)


def _status_field(name: str) -> str | None:
    with open("/proc/self/status", encoding="ascii", errors="replace") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key == name:
                return value.strip()
    return None


def _load_in_child(programs: tuple[bytes, ...]) -> int:
    """Fork; the child sets no_new_privs and loads `programs`. Its wait status as an exit code:
    0 when they loaded, the errno of the failure, or -signal."""
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            _syscalls.prctl(_syscalls.PR_SET_NO_NEW_PRIVS, 1)
            load_filters(programs)
            code = 0
        except OSError as exc:
            code = exc.errno or 255
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# One BPF instruction, `ret SECCOMP_RET_ALLOW`: the smallest filter there is.
_ALLOW_ALL = (struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF_0000),)


def detect() -> tuple[bool, str]:
    """Can this machine filter syscalls with seccomp? (usable, one-line reason)"""
    try:
        programs = compile_filters()
    except UnsupportedError as exc:
        return False, str(exc)
    mode = _status_field("Seccomp")
    if mode is None:
        return False, "kernel without seccomp (no 'Seccomp:' in /proc/self/status)"
    for what, candidate in (("a trivial seccomp filter", _ALLOW_ALL), ("the profile", programs)):
        try:
            code = _load_in_child(candidate)
        except OSError as exc:
            return False, f"cannot fork to test seccomp: {exc}"
        if code != 0:
            cause = os.strerror(code) if code > 0 else f"killed by signal {-code}"
            return False, f"loading {what} failed in a test child: {cause}"
    size = sum(len(program) for program in programs) // 8
    return True, f"seccomp filter mode works ({len(programs)} programs, {size} BPF instructions)"

"""The seccomp profile as data: what it allows, what it never allows, and that it compiles."""

from __future__ import annotations

import platform
import struct
import sys

import pyseccomp
import pytest

from stockade.errors import UnsupportedError
from stockade.kernel import seccomp

# The security contract (DESIGN.md), written out again here rather than imported, so a name
# dropped from seccomp.FORBIDDEN is still checked.
CONTRACT_FORBIDDEN = (
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "ptrace",
    "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "acct",
    "quotactl", "lookup_dcookie", "open_by_handle_at", "name_to_handle_at", "fanotify_init",
    "syslog", "iopl", "ioperm", "vhangup", "nfsservctl", "fsopen", "fsmount", "fsconfig",
    "fspick", "open_tree", "move_mount", "mount_setattr", "uselib", "clone3",
    # allowed only with argument checks, never unconditionally
    "personality", "clone", "socket", "socketpair", "mknod", "mknodat",
)  # fmt: skip

CONDITIONAL = {name for name, _ in seccomp.ALLOW_IF}
ERRNO_NAMES = {name for name, _ in seccomp.ERRNO}
ALL_LISTED = seccomp.ALLOW + seccomp.ALLOW_X86_64


@pytest.mark.parametrize("name", CONTRACT_FORBIDDEN + seccomp.FORBIDDEN)
def test_dangerous_syscall_is_not_allowlisted(name: str) -> None:
    assert name not in ALL_LISTED


@pytest.mark.parametrize("name", seccomp.FORBIDDEN)
def test_forbidden_syscall_has_no_conditional_allow(name: str) -> None:
    assert name not in CONDITIONAL


def test_forbidden_list_covers_the_contract() -> None:
    unconditional = set(CONTRACT_FORBIDDEN) - CONDITIONAL - ERRNO_NAMES
    assert unconditional <= set(seccomp.FORBIDDEN)


def test_allowlist_has_no_duplicates() -> None:
    assert len(set(ALL_LISTED)) == len(ALL_LISTED)


def test_unconditional_conditional_and_errno_rules_are_disjoint() -> None:
    # libseccomp silently drops a conditional rule when the same syscall also has an
    # unconditional one, so an overlap would quietly turn a check into "allow".
    assert not set(ALL_LISTED) & CONDITIONAL
    assert not set(ALL_LISTED) & ERRNO_NAMES
    assert not CONDITIONAL & ERRNO_NAMES


def _nr(arch: int, name: str) -> int:
    return pyseccomp.resolve_syscall(arch, name)


@pytest.mark.parametrize("name", seccomp.allowed_syscalls() + tuple(sorted(CONDITIONAL)))
def test_allowlisted_name_resolves_on_this_arch(name: str) -> None:
    if name in ("mknod",) and platform.machine() != "x86_64":
        pytest.skip("mknod exists only on x86_64; aarch64 has only mknodat")
    assert _nr(pyseccomp.Arch.NATIVE, name) >= 0


@pytest.mark.parametrize("name", seccomp.ALLOW)
def test_common_name_resolves_on_both_supported_arches(name: str) -> None:
    assert _nr(pyseccomp.Arch.X86_64, name) >= 0
    assert _nr(pyseccomp.Arch.AARCH64, name) >= 0


@pytest.mark.parametrize("name", seccomp.ALLOW_X86_64)
def test_x86_64_only_name_is_really_missing_on_aarch64(name: str) -> None:
    assert _nr(pyseccomp.Arch.X86_64, name) >= 0
    assert _nr(pyseccomp.Arch.AARCH64, name) < 0


def _instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]


def test_compile_filters_returns_bpf_programs() -> None:
    programs = seccomp.compile_filters()
    assert isinstance(programs, tuple)
    assert len(programs) == 2
    for program in programs:
        assert isinstance(program, bytes)
        assert program
        assert len(program) % 8 == 0
        assert len(program) // 8 <= 4096  # BPF_MAXINSNS: the kernel refuses longer programs


def test_both_programs_kill_the_process_on_a_foreign_arch() -> None:
    ret_kill_process = (0x06, 0, 0, 0x8000_0000)  # BPF_RET|BPF_K, SECCOMP_RET_KILL_PROCESS
    for program in seccomp.compile_filters():
        assert ret_kill_process in _instructions(program)


def test_compile_filters_is_cached() -> None:
    first = seccomp.compile_filters()
    hits = seccomp.compile_filters.cache_info().hits
    assert seccomp.compile_filters() is first
    assert seccomp.compile_filters.cache_info().hits == hits + 1


def test_missing_libseccomp_raises_unsupported_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyseccomp", None)  # makes `import pyseccomp` fail
    seccomp.compile_filters.cache_clear()
    try:
        with pytest.raises(UnsupportedError) as info:
            seccomp.compile_filters()
        assert "libseccomp2" in info.value.hint
        assert seccomp.detect()[0] is False
    finally:
        seccomp.compile_filters.cache_clear()

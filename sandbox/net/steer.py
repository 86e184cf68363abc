"""Steer the run's allowlisted connections into the relay: a BPF sk_lookup program.

A listener per allowed port cannot cover "every port of 10.1.2.3", and nftables would need
a binary and netfilter. sk_lookup (Linux >= 5.9) runs when the kernel looks for the socket
that an incoming connection belongs to, in the run's network namespace only: the program
below hands every TCP connection whose destination matches an allowlist rule to the relay's
listener (one per address family, in a SOCKMAP), and leaves everything else to the normal
lookup, which finds no listener, so the kernel answers with a reset (ECONNREFUSED at once).
The accepted socket keeps the destination the workload dialled as its local address, which
is how the relay knows where to connect (https://docs.kernel.org/bpf/prog_sk_lookup.html).

The program is generated per run from the rules: a few compares per rule, no maps but the
SOCKMAP, no helpers but lookup / assign / release. It is attached with a BPF link to the
run's namespace; closing the link (or the namespace going away) detaches it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import socket
import struct
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from stockade.errors import SetupError, UnsupportedError
from stockade.kernel.syscalls import bpf

if TYPE_CHECKING:
    from stockade.net.allowlist import Rule

# bpf(2) commands, map / program / attach types, helpers: <linux/bpf.h>
_BPF_MAP_CREATE, _BPF_MAP_UPDATE_ELEM, _BPF_PROG_LOAD, _BPF_LINK_CREATE = 0, 2, 5, 28
_BPF_MAP_TYPE_SOCKMAP = 15
_BPF_PROG_TYPE_SK_LOOKUP = 30
_BPF_SK_LOOKUP = 36
_FUNC_MAP_LOOKUP_ELEM, _FUNC_SK_RELEASE, _FUNC_SK_ASSIGN = 1, 86, 124
_SK_PASS = 1

# struct bpf_sk_lookup offsets: family, protocol, local_ip4, local_ip6[4], local_port
_FAMILY, _PROTOCOL, _LOCAL_IP4, _LOCAL_IP6, _LOCAL_PORT = 8, 12, 40, 44, 60

# eBPF opcodes (class | size/op | mode/source), <linux/bpf_common.h>
_MOV64_REG, _MOV64_IMM, _ADD64_IMM = 0xBF, 0xB7, 0x07
_LDX_W, _ST_W, _LD_IMM64 = 0x61, 0x62, 0x18
_AND32_IMM = 0x54
_JA, _JEQ_IMM, _JNE_IMM, _JNE32_IMM = 0x05, 0x15, 0x55, 0x56
_CALL, _EXIT = 0x85, 0x95
_PSEUDO_MAP_FD = 1
_R0, _R1, _R2, _R3, _R4, _R6, _R7, _FP = 0, 1, 2, 3, 4, 6, 7, 10


def _s32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


class _Assembler:
    """Just enough of an eBPF assembler: instructions, and forward jumps to labels."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, int, int, int, str | None] | str] = []

    def op(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> None:
        self.items.append((code, dst, src, off, imm, None))

    def jump(self, code: int, dst: int, imm: int, label: str) -> None:
        self.items.append((code, dst, 0, 0, imm, label))

    def label(self, name: str) -> None:
        self.items.append(name)

    def assemble(self) -> bytes:
        where, count = {}, 0
        for item in self.items:
            if isinstance(item, str):
                where[item] = count
            else:
                count += 1
        out, count = [], 0
        for item in self.items:
            if isinstance(item, str):
                continue
            code, dst, src, off, imm, label = item
            if label is not None:
                off = where[label] - count - 1
            out.append(struct.pack("<BBhi", code, dst | src << 4, off, _s32(imm)))
            count += 1
        return b"".join(out)


def program(rules: Sequence[Rule], map_fd: int) -> bytes:
    """The sk_lookup program for `rules`: SOCKMAP key 0 is the IPv4 listener, 1 the IPv6.
    Every jump goes forward, and no instruction is unreachable (the verifier refuses both)."""
    asm = _Assembler()
    asm.op(_MOV64_REG, _R6, _R1)  # r6 = ctx
    asm.op(_LDX_W, _R2, _R6, _PROTOCOL)
    asm.jump(_JNE_IMM, _R2, socket.IPPROTO_TCP, "pass")
    asm.op(_LDX_W, _R3, _R6, _LOCAL_PORT)  # r3 = destination port, host order
    asm.op(_LDX_W, _R2, _R6, _FAMILY)
    keys = []
    for version, family, key in ((4, socket.AF_INET, 0), (6, socket.AF_INET6, 1)):
        chosen = [rule for rule in rules if rule.network.version == version]
        if chosen:
            keys.append(key)
            asm.jump(_JNE_IMM, _R2, family, f"not{version}")
            for index, rule in enumerate(chosen):
                _match(asm, rule, f"steer{key}", f"miss{version}.{index}")
            asm.label(f"not{version}")
    asm.jump(_JA, 0, 0, "pass")
    for key in keys:
        asm.label(f"steer{key}")
        asm.op(_ST_W, _FP, 0, -4, key)  # *(u32 *)(fp - 4) = key
        asm.jump(_JA, 0, 0, "steer")
    asm.label("steer")
    asm.op(_LD_IMM64, _R1, _PSEUDO_MAP_FD, 0, map_fd)
    asm.op(0)  # the second half of the 16-byte load
    asm.op(_MOV64_REG, _R2, _FP)
    asm.op(_ADD64_IMM, _R2, imm=-4)
    asm.op(_CALL, imm=_FUNC_MAP_LOOKUP_ELEM)  # r0 = the listener, referenced, or NULL
    asm.jump(_JEQ_IMM, _R0, 0, "pass")
    asm.op(_MOV64_REG, _R7, _R0)
    asm.op(_MOV64_REG, _R1, _R6)
    asm.op(_MOV64_REG, _R2, _R7)
    asm.op(_MOV64_IMM, _R3, imm=0)
    asm.op(_CALL, imm=_FUNC_SK_ASSIGN)  # on failure the normal lookup answers: a reset
    asm.op(_MOV64_REG, _R1, _R7)
    asm.op(_CALL, imm=_FUNC_SK_RELEASE)
    asm.label("pass")
    asm.op(_MOV64_IMM, _R0, imm=_SK_PASS)
    asm.op(_EXIT)
    return asm.assemble()


def _match(asm: _Assembler, rule: Rule, target: str, miss: str) -> None:
    """Jump to `target` when the destination is in the rule's network (and on its port)."""
    network = rule.network
    words = struct.unpack(f"={network.max_prefixlen // 32}I", network.network_address.packed)
    masks = struct.unpack(f"={network.max_prefixlen // 32}I", network.netmask.packed)
    base = _LOCAL_IP4 if network.version == 4 else _LOCAL_IP6
    for index, (word, mask) in enumerate(zip(words, masks, strict=True)):
        if mask == 0:
            continue
        asm.op(_LDX_W, _R4, _R6, base + 4 * index)
        if mask != 0xFFFFFFFF:
            asm.op(_AND32_IMM, _R4, imm=mask)
        asm.jump(_JNE32_IMM, _R4, word, miss)
    if rule.port is not None:
        asm.jump(_JNE32_IMM, _R3, rule.port, miss)
    asm.jump(_JA, 0, 0, target)
    asm.label(miss)


def _create_sockmap() -> int:
    attr = struct.pack("<5I", _BPF_MAP_TYPE_SOCKMAP, 4, 8, 2, 0)
    return bpf(_BPF_MAP_CREATE, attr, "BPF_MAP_CREATE SOCKMAP")


def _map_put(map_fd: int, key: int, sock: socket.socket) -> None:
    k = ctypes.create_string_buffer(struct.pack("<I", key))
    v = ctypes.create_string_buffer(struct.pack("<Q", sock.fileno()))
    attr = struct.pack("<IIQQQ", map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)
    bpf(_BPF_MAP_UPDATE_ELEM, attr, "BPF_MAP_UPDATE_ELEM")


class _Refused(OSError):
    """The verifier refused the program: a bug here, not a missing kernel feature."""


def _load(code: bytes, log_size: int = 0) -> int:
    insns = ctypes.create_string_buffer(code, len(code))
    license = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(log_size or 1)
    attr = struct.pack(
        "<IIQQIIQII16sII",
        _BPF_PROG_TYPE_SK_LOOKUP,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license),
        1 if log_size else 0,
        log_size,
        ctypes.addressof(log) if log_size else 0,
        0,
        0,
        b"stockade_steer",
        0,
        _BPF_SK_LOOKUP,
    )
    try:
        return bpf(_BPF_PROG_LOAD, attr, "BPF_PROG_LOAD sk_lookup")
    except OSError as exc:
        verifier = log.value.decode(errors="replace").strip()[-600:]
        if verifier:
            raise _Refused(exc.errno, f"{exc.strerror}; the verifier said: {verifier}") from None
        if log_size or exc.errno not in (errno.EINVAL, errno.EACCES):
            raise
        os.close(_load(code, 1 << 16))  # load again, only to have the verifier's words
        raise


def _link(prog_fd: int, netns: int) -> int:
    attr = struct.pack("<4I", prog_fd, netns, _BPF_SK_LOOKUP, 0)
    return bpf(_BPF_LINK_CREATE, attr, "BPF_LINK_CREATE sk_lookup")


@contextlib.contextmanager
def attach(netns: int, rules: Sequence[Rule], listeners: Sequence[socket.socket]) -> Iterator[None]:
    """Steer `rules` to `listeners` in the namespace `netns` until the block ends."""
    link = _attach(netns, rules, listeners)
    try:
        yield
    finally:
        os.close(link)


def _attach(netns: int, rules: Sequence[Rule], listeners: Sequence[socket.socket]) -> int:
    step = "net.steer"
    fds: list[int] = []
    try:
        fds.append(_create_sockmap())
        for sock in listeners:
            _map_put(fds[0], 0 if sock.family == socket.AF_INET else 1, sock)
        step = "net.steer.load"
        fds.append(_load(program(rules, fds[0])))
        step = "net.steer.link"
        return _link(fds[1], netns)  # the link keeps the program, the program the map
    except OSError as exc:
        _raise_if_missing(exc, step)
        raise SetupError(step, exc.errno or 0, str(exc)) from None
    finally:
        for fd in fds:
            os.close(fd)


def _raise_if_missing(exc: OSError, step: str) -> None:
    missing = exc.errno in (errno.EPERM, errno.ENOSYS) or (
        exc.errno == errno.EINVAL and step != "net.steer" and not isinstance(exc, _Refused)
    )
    if missing:
        raise UnsupportedError(
            f"BPF sk_lookup, which a network allowlist needs ({exc})",
            "Linux >= 5.9 with CONFIG_BPF_SYSCALL, as root, outside a container profile "
            "that forbids bpf(2)",
        ) from None


@functools.cache
def require() -> None:
    """Raise UnsupportedError, before a run starts, where no sk_lookup program can be loaded
    (an old kernel, bpf(2) refused). Loading one needs no namespace, so it is tried here in
    the caller's own process (no fork: the caller may have threads), once per process; only
    attaching it, which a run does, is left untried."""
    step = "net.steer"
    fds: list[int] = []
    try:
        fds.append(_create_sockmap())
        step = "net.steer.load"
        fds.append(_load(program((), fds[0])))
    except OSError as exc:
        _raise_if_missing(exc, step)
        # Anything else is the run's to meet and report with its step.
    finally:
        for fd in fds:
            os.close(fd)


def probe() -> None:
    """Load and attach a program in a throw-away namespace (for `sandbox doctor`); raises
    UnsupportedError or SetupError when it cannot."""
    import ipaddress

    from stockade.kernel import syscalls as sc
    from stockade.net.allowlist import Rule

    pid = os.fork()
    if pid == 0:
        try:
            sc.unshare(sc.CLONE_NEWNET)
            with socket.socket() as sock, open("/proc/self/ns/net") as netns:
                sock.bind(("127.0.0.1", 0))
                sock.listen()
                rule = Rule(ipaddress.ip_network("192.0.2.0/24"), 80)
                with attach(netns.fileno(), [rule], [sock]):
                    os._exit(0)
        except UnsupportedError:
            os._exit(2)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 2:
        raise UnsupportedError("BPF sk_lookup", "Linux >= 5.9 with CONFIG_BPF_SYSCALL, as root")
    if code != 0:
        raise SetupError("net.steer", 0, "the sk_lookup probe failed")

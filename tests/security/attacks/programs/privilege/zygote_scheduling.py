# summary: a pooled run sets its zygote's (getppid) I/O priority to the idle class and its
#    scheduling attributes (reset-on-fork, utilisation clamps) with ioprio_set and
#    sched_setattr, which every later run of that pooled sandbox would inherit
# harness: pool-serial
import ctypes
import os
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
MACHINE = os.uname().machine
IOPRIO_SET = {"x86_64": 251, "aarch64": 30}[MACHINE]
IOPRIO_GET = {"x86_64": 252, "aarch64": 31}[MACHINE]
SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}[MACHINE]
SCHED_GETATTR = {"x86_64": 315, "aarch64": 275}[MACHINE]
IOPRIO_WHO_PROCESS, IOPRIO_CLASS_IDLE = 1, 3
SCHED_FLAG_RESET_ON_FORK, SCHED_FLAG_KEEP_ALL = 0x01, 0x08 | 0x10
SCHED_FLAG_UTIL_CLAMP = 0x20 | 0x40
ATTR = struct.Struct("=IIQiIQQQII")  # struct sched_attr, with the utilisation clamps


def get_attr(pid: int) -> tuple:
    buffer = ctypes.create_string_buffer(ATTR.size)
    if libc.syscall(SCHED_GETATTR, pid, buffer, ATTR.size, 0) != 0:
        return ("error", ctypes.get_errno())
    return ATTR.unpack(buffer.raw)


def bend(pid: int) -> None:
    done = libc.syscall(IOPRIO_SET, IOPRIO_WHO_PROCESS, pid, IOPRIO_CLASS_IDLE << 13)
    print(
        "ioprio_set(idle) on the zygote:", "done" if done == 0 else os.strerror(ctypes.get_errno())
    )
    # Each apart: a kernel without CONFIG_UCLAMP_TASK refuses the clamps (EOPNOTSUPP).
    for what, flags in (
        ("clamps", SCHED_FLAG_UTIL_CLAMP),
        ("reset-on-fork", SCHED_FLAG_RESET_ON_FORK),
    ):
        attr = ATTR.pack(ATTR.size, 0, SCHED_FLAG_KEEP_ALL | flags, 0, 0, 0, 0, 0, 37, 512)
        done = libc.syscall(SCHED_SETATTR, pid, attr, 0)
        print(
            f"sched_setattr({what}) on the zygote:",
            "done" if done == 0 else os.strerror(ctypes.get_errno()),
        )


if sys.argv[1] == "bend":
    bend(os.getppid())
else:
    own_io = libc.syscall(IOPRIO_GET, IOPRIO_WHO_PROCESS, 0)
    flags, util_min, util_max = (lambda a: (a[2], a[8], a[9]))(get_attr(0))
    if own_io >> 13 == IOPRIO_CLASS_IDLE:
        print("ESCAPED the last run's idle I/O class reached this one:", own_io)
    elif util_min == 37 or util_max == 512:
        print("ESCAPED the last run's utilisation clamps reached this one:", util_min, util_max)
    else:
        print("HELD: this run's scheduling is its own:", own_io, flags, util_min, util_max)

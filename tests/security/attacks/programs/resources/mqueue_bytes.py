# summary: spend the per-user byte allowance of POSIX message queues (RLIMIT_MSGQUEUE) so that
#    other tenants' mq_open fails with EMFILE (pooled sandboxes and sessions refuse mq_open to
#    everyone alike)
# harness: tenants
# control: shared-uid
import ctypes
import errno
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)


class MqAttr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long),
                ("msgsize", ctypes.c_long), ("curmsgs", ctypes.c_long),
                ("reserved", ctypes.c_long * 4)]  # fmt: skip


def open_queue(name: str) -> int:
    """The queue's descriptor, or minus the errno of mq_open(3)."""
    attr = MqAttr(0, 10, 8192, 0)
    fd = libc.mq_open(name.encode(), os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(attr))
    return fd if fd >= 0 else -ctypes.get_errno()


if sys.argv[1] == "hold":
    held = []
    while len(held) < 200 and (fd := open_queue(f"/hold-{len(held)}")) >= 0:
        held.append(fd)
    print("holding", len(held), "queues; then", errno.errorcode.get(-fd, fd), flush=True)
    print("READY", flush=True)
    if sys.argv[2:] == ["wait"]:
        sys.stdin.read()
        print("HELD")
else:
    fd = open_queue(f"/probe-{os.getpid()}")
    if fd == -errno.EMFILE:
        print("ESCAPED another tenant's message queues deny ours: mq_open EMFILE")
    elif fd == -errno.EPERM:
        print("HELD: mq_open is refused here to every run alike")
    elif fd < 0:
        print("mq_open failed otherwise:", errno.errorcode.get(-fd, -fd))
    else:
        print("HELD: this tenant can open a message queue")

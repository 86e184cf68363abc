# summary: share state between concurrent runs through System V IPC (shm, message queue, semaphore)
#    and POSIX message queues
# harness: concurrent
import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

libc = ctypes.CDLL(None, use_errno=True)
librt = ctypes.CDLL(ctypes.util.find_library("rt") or None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
role, token = sys.argv[1], sys.argv[2]
KEY = 0x570CADE
IPC_CREAT = 0o1000
queue = f"/{token[:40]}".encode()
if role == "victim":
    shm = libc.shmget(KEY, 4096, IPC_CREAT | 0o666)
    address = libc.shmat(shm, None, 0)
    if address and address != ctypes.c_void_p(-1).value:
        ctypes.memmove(address, token.encode(), len(token))
    print(
        "shm",
        shm,
        "msg",
        libc.msgget(KEY, IPC_CREAT | 0o666),
        "sem",
        libc.semget(KEY, 1, IPC_CREAT | 0o666),
    )
    print("mq", librt.mq_open(queue, os.O_CREAT | os.O_RDWR, 0o666, None), flush=True)
    print("READY", flush=True)
    sys.stdin.read()
    print("HELD")
    sys.exit(0)
found = []
for name, call in (
    ("shmget", lambda: libc.shmget(KEY, 0, 0)),
    ("msgget", lambda: libc.msgget(KEY, 0)),
    ("semget", lambda: libc.semget(KEY, 0, 0)),
    ("mq_open", lambda: librt.mq_open(queue, os.O_RDONLY)),
):
    if call() >= 0:
        found.append(f"{name} found the other run's object")
for path in ("/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem"):
    try:
        if str(KEY) in Path(path).read_text():
            found.append(f"{path} lists the other run's object")
    except OSError:
        pass
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

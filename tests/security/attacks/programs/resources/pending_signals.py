# summary: queue signals to oneself until the per-user count (RLIMIT_SIGPENDING) is spent, so
#    that other tenants' sigqueue and timer_create fail with EAGAIN; and read another
#    tenant's count in /proc/self/status (SigQ)
# harness: tenants
# control: shared-uid
import ctypes
import errno
import signal
import sys

libc = ctypes.CDLL(None, use_errno=True)
SIGNAL = signal.SIGRTMIN + 3


def queue_one() -> int:
    """0, or the errno of sigqueue(2) of SIGNAL (blocked) to ourselves."""
    if libc.sigqueue(libc.getpid(), SIGNAL, ctypes.c_void_p(0)) == 0:
        return 0
    return ctypes.get_errno()


def queued() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("SigQ:"))
    return int(line.split()[1].split("/")[0])


signal.pthread_sigmask(signal.SIG_BLOCK, [SIGNAL])
if sys.argv[1] == "hold":
    count = 0
    while count < 1_000_000 and queue_one() == 0:
        count += 1
    print("holding", count, "queued signals; SigQ", queued(), flush=True)
    print("READY", flush=True)
    if sys.argv[2:] == ["wait"]:
        sys.stdin.read()
        print("HELD")
else:
    seen = queued()
    error = queue_one()
    if error == errno.EAGAIN:
        print("ESCAPED another tenant's queued signals deny ours: sigqueue EAGAIN")
    elif error:
        print("sigqueue failed otherwise:", errno.errorcode.get(error, error))
    elif seen > 100:
        print("ESCAPED another tenant's queued signals show in our SigQ:", seen)
    else:
        print("HELD: a signal can be queued; SigQ was", seen)

# summary: keep ~500 fds in flight over a unix socket (the kernel counts them per user, against
#    the sender's RLIMIT_NOFILE) so that other tenants cannot pass an fd at all: their pooled
#    sandboxes fail to start ("the pool interpreter ended while starting"), their runs get
#    ETOOMANYREFS
# harness: tenants
# control: shared-uid
import os
import socket
import sys

SCM_MAX_FD = 253  # the most fds one message may carry


def hold() -> list[object]:
    keep, peer = socket.socketpair()
    keep.setblocking(False)
    fd = os.open("/dev/null", os.O_RDONLY)
    sent = 0
    while sent < 2_000:
        try:
            socket.send_fds(keep, [b"x"], [fd] * SCM_MAX_FD)
        except OSError as exc:  # ETOOMANYREFS once over our own RLIMIT_NOFILE
            print("stopped sending:", exc)
            break
        sent += SCM_MAX_FD
    print("holding", sent, "fds in flight, never received", flush=True)
    return [keep, peer, fd]


def probe() -> None:
    one, _other = socket.socketpair()
    try:
        socket.send_fds(one, [b"x"], [0])
        print("HELD: this tenant can still pass an fd")
    except OSError as exc:
        print("ESCAPED another tenant's fds in flight deny ours:", exc)


if sys.argv[1] == "hold":
    HELD = hold()
    print("READY", flush=True)
    if sys.argv[2:] == ["wait"]:
        sys.stdin.read()
        print("HELD")
else:
    probe()

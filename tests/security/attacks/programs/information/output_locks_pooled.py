# summary: a pooled run locks the stdout and stderr it shares with the next run of its pooled
#    sandbox (the zygote's own pipes): an open file description's byte-range lock, whose
#    range can carry 63 bits, and a flock; the next run must find neither
# harness: pool-serial
import fcntl
import struct
import sys

F_OFD_SETLK = 37
LOCK = struct.Struct("hhqqi4x")  # struct flock
if sys.argv[1] == "bend":
    fcntl.fcntl(1, F_OFD_SETLK, LOCK.pack(fcntl.F_WRLCK, 0, 0x5EC2E7, 1, 0))
    fcntl.flock(2, fcntl.LOCK_EX)
    print("locked stdout (OFD, at 0x5ec2e7) and stderr (flock)")
else:
    kind, _, start, _, _ = LOCK.unpack(
        fcntl.fcntl(1, fcntl.F_GETLK, LOCK.pack(fcntl.F_WRLCK, 0, 0, 0, 0))
    )
    with open("/proc/self/fdinfo/2") as info:
        flocked = "FLOCK" in info.read()
    if kind != fcntl.F_UNLCK:
        print(f"ESCAPED the last run's lock on stdout reached this one, at {start:#x}")
    if flocked:
        print("ESCAPED the last run's flock on stderr reached this one")
    if kind == fcntl.F_UNLCK and not flocked:
        print("HELD")

# summary: the same channel through POSIX record locks (F_SETLK read lock, tested with F_GETLK) on a
#    shared read-only file
# harness: concurrent
import fcntl
import os
import struct
import sys

role = sys.argv[1]
fd = os.open(os.__file__, os.O_RDONLY)
# struct flock on x86_64/aarch64: short type, short whence, long start, long len, int pid
if role == "victim":
    fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 0, 0))
    print("READY", flush=True)
    sys.stdin.read()
    print("HELD")
    sys.exit(0)
answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
lock_type = struct.unpack("hhqqi4x", answer)[0]
if lock_type != fcntl.F_UNLCK:
    print("ESCAPED the other run's read lock is visible through F_GETLK")
else:
    print("HELD")

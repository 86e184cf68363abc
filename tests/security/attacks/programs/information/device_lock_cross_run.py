# summary: the same channel through a lock on a device node of /dev (a bind of the host's
#    /dev/null, so one inode for every run and the host)
# harness: concurrent
# hole: /dev/null, zero, full, random and urandom are binds of the host's device nodes: a lock on
#    one is seen by every concurrent run and by the host. An overlay of the run's own cannot stand
#    in for them without root (an overlay mounted in a user namespace is nodev)
import fcntl
import os
import sys

role = sys.argv[1]
fd = os.open("/dev/null", os.O_RDONLY)
if role == "victim":
    # A shared lock: never waits, whatever else holds one.
    fcntl.flock(fd, fcntl.LOCK_SH)
    print("READY", flush=True)
    sys.stdin.read()
    print("HELD")
    sys.exit(0)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("HELD: the other run's lock is invisible here")
except OSError as exc:
    print("ESCAPED the other run's flock on /dev/null is visible:", exc)

# summary: the same channel through a lock on a device node of /dev (it was a bind of the
#    host's /dev/null, one inode for every run and the host; now each run makes its own node)
# harness: concurrent
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

# summary: a covert channel between concurrent runs: a flock held on a shared read-only file (the
#    stdlib's os.py) is seen by the other run
# harness: concurrent
import fcntl
import os
import sys

role = sys.argv[1]
fd = os.open(os.__file__, os.O_RDONLY)
if role == "victim":
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("READY", flush=True)
    sys.stdin.read()
    print("HELD")
    sys.exit(0)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("HELD: the other run's lock is invisible here")
except OSError as exc:
    print("ESCAPED the other run's flock is visible:", exc)

# summary: use up a per-user kernel count (inotify instances) so that a concurrent run of the same
#    uid gets none
# harness: concurrent
import ctypes
import errno
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
role = sys.argv[1]
if role == "victim":
    held = []
    while libc.inotify_init1(0) >= 0 and len(held) < 10_000:
        held.append(1)
    print("victim holds", len(held), "inotify instances", flush=True)
    print("READY", flush=True)
    sys.stdin.read()
    print("HELD")
else:
    fd = libc.inotify_init1(0)
    error = ctypes.get_errno()
    if fd < 0 and error == errno.EMFILE:
        print("ESCAPED the other run's inotify use denies ours:", os.strerror(error))
    else:  # it works, or it is refused to every run alike (EPERM from the filter)
        print("HELD: inotify_init1 gave", fd, os.strerror(error) if fd < 0 else "")

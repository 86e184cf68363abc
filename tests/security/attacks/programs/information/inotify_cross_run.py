# summary: a covert channel through inotify on a shared read-only file: one run watches os.py, the
#    other opens it
# harness: concurrent
import ctypes
import os
import select
import sys

role = sys.argv[1]
target = os.path.join(os.path.dirname(os.__file__), "this.py")
if role == "attacker":
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(0)
    if fd < 0 or libc.inotify_add_watch(fd, target.encode(), 0x20 | 0x1) < 0:  # IN_OPEN | IN_ACCESS
        print("HELD: no inotify on shared files:", os.strerror(ctypes.get_errno()))
        sys.exit(0)
    print("watching", target, flush=True)
    ready, _, _ = select.select([fd], [], [], 3)
    if ready:
        print("ESCAPED saw the other run open", target)
    else:
        print("HELD")
    sys.exit(0)
print("READY", flush=True)
for _ in range(40):  # keep opening the file while the attacker watches
    open(target, "rb").close()
    select.select([], [], [], 0.05)
sys.stdin.read()
print("HELD")

# summary: signal processes outside the run: a host process and the test runner by pid, kill(-1),
#    pidfds, the session and the parent
# harness: victim-process
import ctypes
import os
import signal
import sys

escaped = []
for pid in map(int, sys.argv[1:]):
    for sig in (0, signal.SIGKILL):
        try:
            os.kill(pid, sig)
            # a pid that exists inside too is one of ours: only report a real host hit
            if not os.path.exists(f"/proc/{pid}"):
                escaped.append(f"kill({pid}, {sig}) reached a process we cannot see")
        except OSError:
            pass
    try:
        os.pidfd_open(pid)
        if not os.path.exists(f"/proc/{pid}"):
            escaped.append(f"pidfd_open({pid})")
    except OSError:
        pass
print("visible pids:", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("parent:", os.getppid())
libc = ctypes.CDLL(None, use_errno=True)
for target in (os.getppid(), 0, -1):
    libc.kill(target, signal.SIGCONT)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    os.kill(-1, signal.SIGTERM)  # everything we may signal, which must be only our own run
    os._exit(0)
os.waitpid(pid, 0)
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

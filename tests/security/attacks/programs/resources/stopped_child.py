# summary: a child that stops itself (SIGSTOP) and a parent that stops too: the run must still end
#    on time
# limits: timeout=2
# expect: timeout
# verdict: none
# check: r.wall_time < 7 * T
import os
import signal

if os.fork() == 0:
    os.kill(os.getpid(), signal.SIGSTOP)
    os._exit(0)
print("stopping", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
print("ESCAPED resumed")

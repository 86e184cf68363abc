# summary: a double-forked, setsid, SIGTERM/SIGHUP-ignoring daemon that closes its fds and outlives
#    its parent
# check: r.wall_time < 5 * T
import os
import signal
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        os.closerange(0, 3)
        time.sleep(1000)
        os._exit(0)
    os._exit(0)
os.wait()
print("HELD: the parent exits now; the daemon must die with the run")

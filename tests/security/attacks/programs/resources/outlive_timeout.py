# summary: outlive the timeout: ignore SIGTERM, setsid daemons, a process group of sleepers, and the
#    main process spinning
# limits: timeout=2
# expect: timeout
# verdict: none
# check: 1.9 < r.wall_time < 7 * T
import os
import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
for _ in range(4):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(1000)
        os._exit(0)
print("started", flush=True)
while True:
    pass

# summary: a fork bomb that keeps every child alive, to count how many processes it really gets
# limits: timeout=8
import os
import signal
import time

limit = 64  # the default policy's pids (the run's init counts as one)
read_end, write_end = os.pipe()
children = []
try:
    while len(children) < 10 * limit:
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            while True:  # grandchildren too, until the kernel says no
                try:
                    if os.fork() == 0:
                        os.write(write_end, b"g")
                        time.sleep(30)
                        os._exit(0)
                except OSError:
                    time.sleep(30)
                    os._exit(0)
        children.append(pid)
except OSError as exc:
    print("fork stopped:", exc)
time.sleep(0.5)
os.set_blocking(read_end, False)
try:
    grandchildren = len(os.read(read_end, 1 << 16))
except BlockingIOError:
    grandchildren = 0
total = 1 + len(children) + grandchildren
print("children", len(children), "grandchildren", grandchildren)
for pid in children:
    os.kill(pid, signal.SIGKILL)
print(f"ESCAPED {total} processes at once" if total > limit else "HELD")

# summary: end the run's init (PID 1) with every signal a process may send it from inside, so
#    the run reports a setup failure and its output is lost; then print the verdict
# via: api, cli
import os
import signal
import time

escaped = []
for number in sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}):
    try:
        os.kill(1, number)
    except OSError:
        continue
    time.sleep(0.01)  # a handler would have run, and the init ended, by now
if os.getppid() != 1:
    escaped.append("the init died: this process was reparented")
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "", flush=True)

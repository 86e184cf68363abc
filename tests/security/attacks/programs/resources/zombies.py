# summary: pile up zombies: fork children that exit at once, never wait for them, then exit (the
#    init must reap)
import os
import time
from pathlib import Path

made = 0
try:
    for _ in range(1000):
        if os.fork() == 0:
            os._exit(0)
        made += 1
except OSError as exc:
    print("fork stopped:", exc)
time.sleep(0.2)
zombies = 0
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if ") Z " in Path(f"/proc/{pid}/stat").read_text():
                zombies += 1
        except OSError:
            pass
print("made", made, "zombies", zombies)
print(f"ESCAPED {zombies} zombies at once" if zombies > 64 else "HELD")

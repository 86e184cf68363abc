# summary: a memory bomb through tmpfs: fill /tmp, /workspace and /dev/shm (64M each) under a 96M
#    memory limit
# limits: memory=96M
# expect: memory_limit ok
# verdict: none
# check: r.peak_memory <= p.limits.memory + 8 * M
import os

block = b"\x5a" * (1 << 20)
total = 0
for place in ("/tmp", "/workspace", "/dev/shm"):
    try:
        with open(f"{place}/fill", "wb") as file:
            while True:
                total += file.write(block)
                file.flush()
    except OSError as exc:
        print(place, exc)
total = sum(os.path.getsize(f"{p}/fill") for p in ("/tmp", "/workspace", "/dev/shm"))
print("kept in tmpfs:", total)
print(f"ESCAPED kept {total} bytes in tmpfs" if total > 96 << 20 else "HELD")

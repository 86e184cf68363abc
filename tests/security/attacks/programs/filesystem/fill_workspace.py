# summary: fill /workspace past its cap (64M in the default policy)
# check: r.peak_memory <= p.limits.memory
import os

cap = 64 << 20
written = 0
block = b"\xa5" * (1 << 20)
try:
    with open("/workspace/fill", "wb") as file:
        while written < 4 * cap:
            written += file.write(block)
            file.flush()
except OSError as exc:
    print("stopped:", exc)
written = os.path.getsize("/workspace/fill")
print("written", written)
print(f"ESCAPED wrote {written} bytes into /workspace" if written > cap else "HELD")

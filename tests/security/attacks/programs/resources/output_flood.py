# summary: flood stdout and stderr with 256 MiB each, interleaved; the program must not block
# verdict: none
# check: r.stdout_truncated and r.stderr_truncated and r.stdout_len <= p.limits.output and
#    r.stderr_len <= p.limits.output and r.wall_time < 8 * T
import os

chunk = b"flood " * 10922 + b"\n"
for _ in range((256 << 20) // len(chunk)):
    os.write(1, chunk)
    os.write(2, chunk)
# The marker comes after the cap: it must be dropped, so it is never seen.
os.write(1, b"ESCAPED the output was not capped\n")

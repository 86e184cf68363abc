# summary: a memory bomb through mmap: one 2 GiB anonymous mapping, populated page by page
# expect: memory_limit
# verdict: none
# check: r.peak_memory <= p.limits.memory + 8 * M
import mmap

size = 2 << 30
region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for offset in range(0, size, mmap.PAGESIZE):
    region[offset] = 1
print("ESCAPED touched 2 GiB")

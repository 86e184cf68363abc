# summary: a memory bomb: grow a heap in 16 MiB steps, touching every page, far past the limit
# expect: memory_limit
# verdict: none
# check: r.peak_memory <= p.limits.memory + 8 * M
held = []
for step in range(256):  # 4 GiB
    held.append(bytearray(16 << 20))
    print("held", (step + 1) * 16, "MiB", flush=True)
print("ESCAPED allocated 4 GiB")

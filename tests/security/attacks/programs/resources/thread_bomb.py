# summary: a thread bomb: start threads until the kernel refuses, count them
import threading

limit = 64
stop = threading.Event()
threads = []
try:
    while len(threads) < 10 * limit:
        thread = threading.Thread(target=stop.wait, daemon=True)
        thread.start()
        threads.append(thread)
except RuntimeError as exc:
    print("threads stopped:", exc)
print("threads", len(threads))
stop.set()
print(f"ESCAPED {len(threads) + 2} tasks at once" if len(threads) + 2 > limit else "HELD")

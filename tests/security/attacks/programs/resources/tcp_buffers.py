# summary: queue far more than the memory limit in loopback TCP buffers (100 connections filled
#    and never read): kernel memory of the machine-wide tcp_mem pool, not of the run's cgroup
#    unless the cgroup counts it. cgroup v2 counts socket buffers against memory.max, so there
#    the run ends at its memory limit; v1 gives them a limit of their own (kmem.tcp), which
#    makes send() fail instead
# limits: memory=64M
# expect: v1=ok v2=memory_limit
# verdict: v1=held v2=none
import socket

LIMIT = 64 << 20
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(128)
queued, held = 0, []
for _ in range(100):
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    client.setblocking(False)
    held += [client, accepted]
    while True:
        try:
            queued += client.send(b"x" * 65536)
        except OSError:  # full, or the cgroup refused more
            break
escaped = [f"queued {queued >> 20} MiB in TCP buffers"] if queued > LIMIT * 5 // 4 else []
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "", flush=True)

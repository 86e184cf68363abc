# summary: accept connections from outside: listen on every address inside and let the host try to
#    connect
# harness: listen-probe
import select
import socket
import sys

banner = sys.argv[1].encode()
server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
server.bind(("::", 0))
server.listen()
print("PORT", server.getsockname()[1], flush=True)
accepted = 0
while True:
    ready, _, _ = select.select([server, sys.stdin], [], [], 10)
    if server in ready:
        conn, peer = server.accept()
        conn.sendall(banner)
        conn.close()
        accepted += 1
        print("accepted", peer, flush=True)
    if sys.stdin in ready or not ready:
        break
print("HELD" if accepted == 0 else f"ESCAPED accepted {accepted} connections from outside")

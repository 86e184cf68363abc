# summary: reach the host's own loopback services (Judge0 CVE-2024-29021): a server on the host's
#    127.0.0.1 and ::1
# harness: host-listener
# control: host
import socket
import sys

port, banner = int(sys.argv[1]), sys.argv[2]
found = []
for host in ("127.0.0.1", "localhost", "::1", "::ffff:127.0.0.1", "127.1.2.3", "0.0.0.0"):
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect((host, port))
            if banner.encode() in sock.recv(200):
                found.append(f"got the host's banner from {host}:{port}")
    except OSError as exc:
        print(f"{host}:{port}:", exc)
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

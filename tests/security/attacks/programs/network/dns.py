# summary: resolve names and carry data out over DNS: getaddrinfo, UDP and TCP port 53 to public
#    resolvers, the resolver config
import socket
from pathlib import Path

found = []
for name in ("example.com", "stockade-exfil-1234.example.com", "metadata.google.internal"):
    try:
        answer = socket.getaddrinfo(name, 80)
        found.append(f"{name} resolved to {answer[0][4]}")
    except OSError as exc:
        print(name, exc)
query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
for resolver in ("8.8.8.8", "1.1.1.1", "127.0.0.53", "127.0.0.11"):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1)
            sock.sendto(query, (resolver, 53))
            found.append(f"UDP answer from {resolver}: {sock.recv(512)[:8]!r}")
    except OSError as exc:
        print("udp", resolver, exc)
    try:
        with socket.create_connection((resolver, 53), timeout=1) as sock:
            sock.sendall(len(query).to_bytes(2, "big") + query)
            found.append(f"TCP answer from {resolver}: {sock.recv(512)[:8]!r}")
    except OSError as exc:
        print("tcp", resolver, exc)
print("resolv.conf:", repr(Path("/etc/resolv.conf").read_text()))
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

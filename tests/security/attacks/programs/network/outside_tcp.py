# summary: reach the internet over TCP: public IPv4 addresses by number and by name
import socket

found = []
for host, port in (
    ("1.1.1.1", 80),
    ("8.8.8.8", 443),
    ("93.184.215.14", 80),
    ("example.com", 80),
    ("pypi.org", 443),
):
    try:
        with socket.create_connection((host, port), timeout=1):
            found.append(f"connected to {host}:{port}")
    except OSError as exc:
        print(f"{host}:{port}:", exc)
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

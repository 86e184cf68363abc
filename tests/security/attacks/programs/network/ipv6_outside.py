# summary: reach the internet over IPv6 and v4-mapped addresses, around IPv4-only rules
import socket

found = []
for host in ("2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:1.1.1.1", "64:ff9b::101:101"):
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect((host, 80))
            found.append(f"connected to [{host}]:80")
    except OSError as exc:
        print(f"[{host}]:", exc)
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

# summary: see or use the host's network: interfaces, addresses, routes, ARP and listening sockets
#    in /proc/net
import fcntl
import os
import socket
import struct
from pathlib import Path

found = []
interfaces = [
    line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]
]
print("interfaces:", interfaces)
if set(interfaces) - {"lo"}:
    found.append(f"interfaces besides lo: {interfaces}")
for path in ("/proc/net/route", "/proc/net/ipv6_route", "/proc/net/arp"):
    try:
        rows = [line for line in Path(path).read_text().splitlines()[1:] if line.strip()]
    except OSError:
        continue
    rows = [r for r in rows if not r.startswith("00000000000000000000000000000001")]  # ::1
    rows = [r for r in rows if " lo" not in r and not r.endswith("lo")]
    if rows:
        found.append(f"{path}: {rows[:3]}")
for path in ("/proc/net/tcp", "/proc/net/tcp6", "/proc/net/unix"):
    rows = Path(path).read_text().splitlines()[1:]
    if rows:
        found.append(f"{path} shows {len(rows)} sockets")
if os.path.exists("/sys/class/net"):
    found.append("/sys/class/net exists")
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    try:
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", 0))  # SIOCSIFFLAGS: lo down
        found.append("brought lo down (needs CAP_NET_ADMIN)")
    except OSError as exc:
        print("SIOCSIFFLAGS:", exc)
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

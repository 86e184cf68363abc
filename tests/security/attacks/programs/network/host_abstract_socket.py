# summary: connect to the host's abstract unix sockets (X11, D-Bus, containerd-shim CVE-2020-15257):
#    one the host listens on now
# harness: host-abstract
# control: host
import socket
import sys

name, banner = sys.argv[1], sys.argv[2]
found = []
for address in (f"\0{name}", "\0/tmp/.X11-unix/X0", "\0/containerd-shim/shim.sock"):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(address)
            data = sock.recv(200)
            found.append(f"connected to {address!r}: {data[:40]!r}")
    except OSError as exc:
        print(repr(address), exc)
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

# summary: connect to the host's pathname sockets: docker, containerd, D-Bus, systemd, nscd, X11,
#    postgres
import glob
import socket

found = []
candidates = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/run/dbus/system_bus_socket",
    "/var/run/dbus/system_bus_socket",
    "/run/systemd/private",
    "/run/systemd/journal/socket",
    "/var/run/nscd/socket",
    "/tmp/.X11-unix/X0",
    "/run/postgresql/.s.PGSQL.5432",
    "/var/run/postgresql/.s.PGSQL.5432",
]
candidates += glob.glob("/run/**/*.sock", recursive=True) + glob.glob(
    "/var/run/**/*.sock", recursive=True
)
for path in candidates:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(path)
            found.append(f"connected to {path}")
    except OSError:
        pass
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

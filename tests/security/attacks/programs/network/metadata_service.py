# summary: reach cloud metadata and link-local services: 169.254.169.254, fd00:ec2::254,
#    169.254.170.2, 100.100.100.200
import socket

found = []
for host, port in (
    ("169.254.169.254", 80),
    ("169.254.170.2", 80),
    ("100.100.100.200", 80),
    ("fd00:ec2::254", 80),
    ("::ffff:169.254.169.254", 80),
    ("metadata.google.internal", 80),
):
    try:
        with socket.create_connection((host, port), timeout=1):
            found.append(f"connected to {host}:{port}")
    except OSError as exc:
        print(f"{host}:", exc)
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

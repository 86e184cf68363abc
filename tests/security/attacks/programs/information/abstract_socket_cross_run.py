# summary: talk between concurrent runs through an abstract unix socket (the abstract namespace is
#    per network namespace)
# harness: concurrent
import socket
import sys

role, token = sys.argv[1], sys.argv[2]
if role == "victim":
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(f"\0{token}")
    server.listen()
    print("READY", flush=True)
    sys.stdin.read()
    print("HELD")
    sys.exit(0)
try:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(f"\0{token}")
    print("ESCAPED connected to the other run's abstract socket")
except OSError as exc:
    print("connect:", exc)
    print("HELD")

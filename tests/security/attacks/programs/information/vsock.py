# summary: AF_VSOCK to the hypervisor or the host (CID 2), to local (CID 1) and to any CID; listen
#    on one too
import socket

found = []
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):
    try:
        sock = socket.socket(socket.AF_VSOCK, kind)
    except OSError as exc:
        print("socket(AF_VSOCK):", exc)
        continue
    found.append(f"socket(AF_VSOCK, {kind})")
    for cid in (2, 1, 0xFFFFFFFF):
        try:
            sock.settimeout(1)
            sock.connect((cid, 22))
            found.append(f"connected to CID {cid}")
        except OSError:
            pass
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

# summary: open MPTCP sockets (IPPROTO_MPTCP, a TCP stack of its own in the kernel), IPv4 and
#    IPv6: only plain TCP is allowed
import socket

IPPROTO_MPTCP = 262
escaped = []
for family in (socket.AF_INET, socket.AF_INET6):
    try:
        socket.socket(family, socket.SOCK_STREAM, IPPROTO_MPTCP).close()
        escaped.append(f"opened an MPTCP socket ({family.name})")
    except OSError:
        pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "", flush=True)

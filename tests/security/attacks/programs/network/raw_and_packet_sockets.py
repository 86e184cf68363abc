# summary: raw and packet sockets (spoofing, scanning, AF_PACKET CVE-2020-14386): SOCK_RAW,
#    AF_PACKET, ICMP ping sockets, UDP
import socket

found = []
for family, kind, proto, label in (
    (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, "AF_INET SOCK_RAW ICMP"),
    (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW, "AF_INET SOCK_RAW IPPROTO_RAW"),
    (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6, "AF_INET6 SOCK_RAW"),
    (socket.AF_PACKET, socket.SOCK_RAW, 0x0300, "AF_PACKET SOCK_RAW"),
    (socket.AF_PACKET, socket.SOCK_DGRAM, 0x0300, "AF_PACKET SOCK_DGRAM"),
    (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP, "ICMP ping socket"),
    (socket.AF_INET, socket.SOCK_DGRAM, 0, "UDP"),
    (socket.AF_INET6, socket.SOCK_DGRAM, 0, "UDP6"),
    (socket.AF_INET, socket.SOCK_STREAM, 132, "SCTP"),
):
    try:
        socket.socket(family, kind, proto).close()
        found.append(label)
    except OSError as exc:
        print(label, exc)
for line in found:
    print("ESCAPED made a socket:", line)
print("HELD" if not found else "")

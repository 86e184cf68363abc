# summary: netlink sockets (route, netfilter, audit, uevents, diag): the door to nf_tables bugs such
#    as CVE-2024-1086
import socket

found = []
for proto, label in (
    (0, "ROUTE"),
    (12, "NETFILTER"),
    (9, "AUDIT"),
    (15, "KOBJECT_UEVENT"),
    (4, "SOCK_DIAG"),
    (16, "GENERIC"),
    (6, "XFRM"),
):
    for kind in (socket.SOCK_RAW, socket.SOCK_DGRAM):
        try:
            socket.socket(socket.AF_NETLINK, kind, proto).close()
            found.append(f"NETLINK_{label}")
        except OSError as exc:
            print(label, exc)
for line in sorted(set(found)):
    print("ESCAPED made a netlink socket:", line)
print("HELD" if not found else "")

# summary: learn the host's name: uname, /proc/sys/kernel/hostname, /etc/hostname, /etc/hosts,
#    sethostname
# harness: secret
# control: host
import contextlib
import os
import socket
import sys
from pathlib import Path

host_name = sys.argv[2]
seen = {"uname": os.uname().nodename, "gethostname": socket.gethostname()}
for path in (
    "/proc/sys/kernel/hostname",
    "/etc/hostname",
    "/etc/hosts",
    "/proc/sys/kernel/domainname",
):
    with contextlib.suppress(OSError):
        seen[path] = Path(path).read_text()
print(seen)
found = [
    where
    for where, value in seen.items()
    if host_name in value.split() or value.strip() == host_name
]
for where in found:
    print("ESCAPED the host's name is in", where)
print("HELD" if not found else "")

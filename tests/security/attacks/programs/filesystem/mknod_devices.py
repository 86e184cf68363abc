# summary: create device nodes (mem, kmsg, sda, the host's root disk) in every writable place
import os
import stat

escaped = []
devices = {
    "mem": (stat.S_IFCHR, 1, 1),
    "kmsg": (stat.S_IFCHR, 1, 11),
    "port": (stat.S_IFCHR, 1, 4),
    "sda": (stat.S_IFBLK, 8, 0),
    "vda": (stat.S_IFBLK, 253, 0),
    "loop0": (stat.S_IFBLK, 7, 0),
}
for base in ("/workspace", "/tmp", "/dev/shm", "/dev"):
    for name, (kind, major, minor) in devices.items():
        path = f"{base}/node-{name}"
        try:
            os.mknod(path, kind | 0o666, os.makedev(major, minor))
        except OSError:
            continue
        escaped.append(f"mknod {path}")
        try:
            fd = os.open(path, os.O_RDONLY)
            escaped.append(f"opened {path}: {os.read(fd, 16)!r}")
        except OSError:
            pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

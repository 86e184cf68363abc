# summary: create, write, rename, chmod and delete files outside /workspace and /tmp
import os
import uuid

name = f"stockade-attack-{uuid.uuid4().hex}"
writable = {"/workspace", "/tmp", "/dev/shm"}
places = [
    "/",
    "/etc",
    "/usr",
    "/usr/bin",
    "/usr/local",
    "/bin",
    "/lib",
    "/root",
    "/home",
    "/var",
    "/var/tmp",
    "/opt",
    "/srv",
    "/run",
    "/boot",
    "/mnt",
    "/proc",
    "/dev",
    "/workspace/..",
    "/tmp/../etc",
    "/dev/shm/../..",
]
escaped = []
for place in places:
    if os.path.realpath(place) in writable:
        continue
    path = os.path.join(place, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"x")
        os.close(fd)
        escaped.append(f"created {path}")
        os.unlink(path)
    except OSError:
        pass
    try:
        os.mkdir(path)
        escaped.append(f"mkdir {path}")
        os.rmdir(path)
    except OSError:
        pass
for target in ["/etc/passwd", "/etc/hosts", "/usr/bin/env", "/etc/ld.so.cache"]:
    for what, action in [
        ("chmod", lambda t: os.chmod(t, 0o777)),
        ("chown", lambda t: os.chown(t, os.getuid(), os.getgid())),
        ("utime", lambda t: os.utime(t, (0, 0))),
        ("rename", lambda t: os.rename(t, t + ".moved")),
        ("unlink", os.unlink),
        ("setxattr", lambda t: os.setxattr(t, "user.stockade", b"x")),
    ]:
        try:
            action(target)
            escaped.append(f"{what} {target}")
        except OSError:
            pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

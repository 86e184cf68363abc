# summary: climb out of /workspace and /tmp with .., chdir, fchdir and openat, looking for host
#    files
# harness: secret
# control: host
import contextlib
import os
import sys

token = sys.argv[1]
found = []


def look(directory_fd: int, label: str) -> None:
    for place in ("root", "home", "var/tmp", "etc", "tmp", "run", "opt", "dev/shm"):
        try:
            fd = os.open(f"{place}/{token}", os.O_RDONLY, dir_fd=directory_fd)
            found.append(f"{label}/{place}/{token}: {os.read(fd, 100)!r}")
            os.close(fd)
        except OSError:
            pass


for start in (os.getcwd(), "/workspace", "/tmp", "/dev/shm", "/proc/self/cwd", "/"):
    try:
        os.chdir(start)
        for _ in range(40):
            os.chdir("..")
        look(os.open(".", os.O_RDONLY | os.O_DIRECTORY), f"chdir {start} then ..x40")
        fd = os.open(start, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(40):
            up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = up
        look(fd, f"openat {start} ..x40")
        os.fchdir(fd)
        look(os.open(".", os.O_RDONLY | os.O_DIRECTORY), f"fchdir {start}")
    except OSError:
        pass
for path in ("/../../../root", "/workspace/../../root", "/tmp/./../../../../home"):
    with contextlib.suppress(OSError):
        look(os.open(path + "/..", os.O_RDONLY | os.O_DIRECTORY), path)
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

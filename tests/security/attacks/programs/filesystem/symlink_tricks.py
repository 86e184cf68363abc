# summary: symlinks in /workspace and /tmp to host paths, /proc roots, loops and long chains
# harness: secret
import os
import sys

token = sys.argv[1]
found = []
targets = [f"/{place}/{token}" for place in ("root", "home", "var/tmp", "etc", "tmp", "run")]
targets += [
    f"/proc/1/root/root/{token}",
    f"/proc/self/root/../root/{token}",
    f"../../../../root/{token}",
    f"/workspace/../root/{token}",
]
for index, target in enumerate(targets):
    for base in ("/workspace", "/tmp", "/dev/shm"):
        link = f"{base}/link{index}"
        try:
            os.symlink(target, link)
            with open(link) as file:
                found.append(f"{link} -> {target}: {file.read(100)!r}")
        except OSError:
            pass
# a chain of directory links, each hop relative to the last
try:
    os.symlink("/", "/workspace/r0")
    for i in range(1, 30):
        os.symlink(f"r{i - 1}/..", f"/workspace/r{i}")
    for place in ("root", "home", "var/tmp"):
        try:
            with open(f"/workspace/r29/{place}/{token}") as file:
                found.append(f"chain -> {place}: {file.read(100)!r}")
        except OSError:
            pass
except OSError as exc:
    print("chain:", exc)
# a symlinked directory swapped under an open path, then written through
try:
    os.mkdir("/workspace/swap")
    os.rmdir("/workspace/swap")
    os.symlink("/etc", "/workspace/swap")
    with open("/workspace/swap/stockade-through-link", "w") as file:
        file.write("x")
    found.append("wrote /etc/stockade-through-link through a symlinked directory")
except OSError:
    pass
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

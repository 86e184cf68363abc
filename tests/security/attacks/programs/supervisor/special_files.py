# summary: leave files a host-side reader would choke on: FIFOs in place of inputs, sockets, sparse
#    huge files, unreadable dirs, hostile names
# check: r.wall_time < 5 * T
import os
import socket

for name in ("data.csv", "result.txt"):
    path = f"/workspace/{name}"
    if os.path.exists(path):
        os.unlink(path)
    os.mkfifo(path)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("/workspace/socket")
with open("/workspace/sparse", "wb") as file:
    file.truncate(60 << 20)  # under the file-size limit; a naive copier reads 60 MiB of zeros
os.makedirs("/workspace/locked/inner")
os.chmod("/workspace/locked", 0)
for name in ("new\nline", "../../escape", "\udcff-not-utf8", "-rf", " ", "a" * 255):
    try:
        with open(os.path.join("/workspace", name), "w") as file:
            file.write("x")
    except (OSError, ValueError):
        pass
print("HELD: hostile files left behind for the supervisor")

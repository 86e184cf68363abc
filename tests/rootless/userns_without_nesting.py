"""Run a command in a throw-away user namespace where no further user namespace may be made
(user.max_user_namespaces=0 there), with root and UID/GID mapped to themselves.

Usage: python userns_without_nesting.py UID GID COMMAND [ARG...]   (as root)
"""

import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000


def main() -> int:
    uid, gid, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWUSER) != 0:
            os._exit(99)
        os.write(ready_w, b"x")
        os.read(go_r, 1)  # the parent writes our maps meanwhile: only it may map two ids
        with open("/proc/sys/user/max_user_namespaces", "w") as limit:
            limit.write("0")
        os.execvp(command[0], command)
    os.read(ready_r, 1)
    for name, ids in (("uid_map", (0, uid)), ("gid_map", (0, gid))):
        with open(f"/proc/{pid}/{name}", "w") as mapping:
            mapping.write("".join(f"{i} {i} 1\n" for i in ids))
    os.write(go_w, b"x")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())

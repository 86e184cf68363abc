# summary: grow pipes until the per-user pipe pages pass fs.pipe-user-pages-soft, so that other
#    tenants' pipes shrink to two pages and cannot grow
# harness: tenants
# control: shared-uid
import fcntl
import os
import sys

MIB = 1 << 20
DEFAULT = 1 << 16  # a pipe's size when its user is under the soft limit


if sys.argv[1] == "hold":
    held = []
    while len(held) < 200:  # 64 pipes of 1 MiB pass the default soft limit (64 MiB)
        read_end, write_end = os.pipe()
        held += [read_end, write_end]
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, MIB)
        except OSError as exc:  # EPERM once over the soft limit
            print("stopped growing:", exc)
            break
    print("holding", len(held) // 2, "pipes of up to 1 MiB", flush=True)
    print("READY", flush=True)
    if sys.argv[2:] == ["wait"]:
        sys.stdin.read()
        print("HELD")
else:
    read_end, write_end = os.pipe()
    size = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, MIB)
        grew = True
    except OSError:
        grew = False
    if size < DEFAULT or not grew:
        print("ESCAPED another tenant's pipe pages shrink ours:", size, "bytes, can grow:", grew)
    else:
        print("HELD: a new pipe has", size, "bytes and grows to 1 MiB")

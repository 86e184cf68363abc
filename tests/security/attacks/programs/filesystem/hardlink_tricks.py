# summary: hard-link bound host files into the writable tmpfs, then write through the link
import os

escaped = []
sources = [
    "/etc/ld.so.cache",
    "/usr/bin/env",
    "/bin/sh",
    os.path.realpath("/proc/self/exe"),
    "/etc/passwd",
    "/etc/hosts",
]
for source in sources:
    for base in ("/workspace", "/tmp", "/dev/shm"):
        link = f"{base}/hl-{os.path.basename(source)}"
        try:
            os.link(source, link)
        except OSError:
            continue
        escaped.append(f"linked {source} to {link}")
        try:
            with open(link, "ab") as file:
                file.write(b"")
            escaped.append(f"opened {source} for writing through {link}")
        except OSError:
            pass
# linkat(AT_EMPTY_PATH) of an fd opened read-only on a host file (needs CAP_DAC_READ_SEARCH)
for source in sources:
    try:
        fd = os.open(source, os.O_RDONLY)
        os.link(f"/proc/self/fd/{fd}", "/workspace/hl-fd", follow_symlinks=True)
        escaped.append(f"linked the open fd of {source} into /workspace")
    except OSError:
        pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

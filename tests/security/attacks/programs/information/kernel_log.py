# summary: read the kernel log: /dev/kmsg, /proc/kmsg, syslog(2) through dmesg
import ctypes
import os
import subprocess

found = []
for path in ("/dev/kmsg", "/proc/kmsg"):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        found.append(f"opened {path}")
        os.close(fd)
    except OSError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
buffer = ctypes.create_string_buffer(4096)
if libc.klogctl(3, buffer, 4096) > 0:
    found.append(f"klogctl(READ_ALL): {buffer.value[:60]!r}")
try:
    done = subprocess.run(["dmesg"], capture_output=True, text=True)
    if done.returncode == 0 and done.stdout:
        found.append(f"dmesg: {done.stdout[:60]!r}")
except OSError:
    pass
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

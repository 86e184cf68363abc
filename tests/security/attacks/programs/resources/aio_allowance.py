# summary: take the machine's Linux AIO allowance (fs.aio-max-nr, shared by every user) with
#    io_setup, so that every host program's io_setup fails while the run lasts
import ctypes
import os

IO_SETUP = {"x86_64": 206, "aarch64": 0}[os.uname().machine]
libc = ctypes.CDLL(None, use_errno=True)
context = ctypes.c_ulong(0)
escaped = []
if libc.syscall(IO_SETUP, 65536, ctypes.byref(context)) == 0:
    escaped.append("io_setup took 65536 AIO events")
elif libc.syscall(IO_SETUP, 1, ctypes.byref(context)) == 0:
    escaped.append("io_setup works: enough contexts take the allowance")
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "", flush=True)

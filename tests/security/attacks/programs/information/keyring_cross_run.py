# summary: pass a secret between concurrent runs of the same uid through the kernel keyrings (user
#    keyring, /proc/keys)
# harness: concurrent
import ctypes
import sys
from pathlib import Path

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
role, token = sys.argv[1], sys.argv[2]
SYS_ADD_KEY, SYS_KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[
    __import__("platform").machine()
]
KEY_SPEC_USER_KEYRING = -4
if role == "victim":
    for keyring in (-3, -4, -5):  # session, user, user-session
        key = libc.syscall(
            SYS_ADD_KEY, b"user", token.encode(), token.encode(), len(token), keyring
        )
        print("add_key", keyring, key)
    print("READY", flush=True)
    sys.stdin.read()
    print("HELD")
    sys.exit(0)
found = []
keys = Path("/proc/keys").read_text()
if token in keys:
    found.append("/proc/keys lists the other run's key")
key = libc.syscall(
    SYS_KEYCTL, 10, KEY_SPEC_USER_KEYRING, b"user", token.encode(), 0
)  # KEYCTL_SEARCH
if key > 0:
    found.append(f"KEYCTL_SEARCH found key {key}")
for line in found:
    print("ESCAPED", line)
print("HELD" if not found else "")

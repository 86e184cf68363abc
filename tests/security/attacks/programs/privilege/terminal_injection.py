# summary: push keystrokes into the caller's terminal: TIOCSTI (also with high bits set,
#    CVE-2019-10063), TIOCLINUX, after TIOCSCTTY
# harness: pty
import ctypes
import errno
import fcntl
import os
import termios

libc = ctypes.CDLL(None, use_errno=True)
escaped = []
print("stdin is a tty:", os.isatty(0))
try:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    print("took stdin as the controlling terminal")
except OSError as exc:
    print("TIOCSCTTY:", exc)
for command in (termios.TIOCSTI, termios.TIOCSTI | (1 << 32), termios.TIOCSTI | (0xFFFF << 48)):
    for char in b"id\n":
        result = libc.ioctl(0, ctypes.c_ulong(command), ctypes.c_char_p(bytes([char])))
        if result == 0:
            escaped.append(f"TIOCSTI {command:#x} pushed {chr(char)!r}")
        else:
            print(f"TIOCSTI {command:#x}:", errno.errorcode.get(ctypes.get_errno()))
            break
for subcode in (2, 3):  # TIOCL_SETSEL, TIOCL_PASTESEL
    arg = ctypes.create_string_buffer(bytes([subcode]) + bytes(15))
    if libc.ioctl(0, ctypes.c_ulong(termios.TIOCLINUX), arg) == 0:
        escaped.append(f"TIOCLINUX subcode {subcode}")
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

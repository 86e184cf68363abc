# summary: find a terminal to push keystrokes into (stdio, /dev/tty, a new pty, the console)
#    and try TIOCSTI (also with high bits set, CVE-2019-10063) and TIOCLINUX on it. The
#    caller's terminal is never handed over (the API refuses it as stdin, the CLI gives an
#    empty stdin), the root has no pty device, and the filter refuses both ioctls anyway.
# via: api, cli
import ctypes
import errno
import glob
import os
import termios

libc = ctypes.CDLL(None, use_errno=True)
escaped = []
terminals = [fd for fd in (0, 1, 2) if os.isatty(fd)]
for path in ("/dev/tty", "/dev/ptmx", "/dev/console", "/dev/tty0", *glob.glob("/dev/pts/*")):
    try:
        terminals.append(os.open(path, os.O_RDWR | os.O_NOCTTY))
    except OSError as exc:
        print(f"{path}:", exc.strerror)
for fd in terminals:
    escaped.append(f"got a terminal: fd {fd}")
    for command in (termios.TIOCSTI, termios.TIOCSTI | (1 << 32), termios.TIOCSTI | (0xFFFF << 48)):
        if libc.ioctl(fd, ctypes.c_ulong(command), ctypes.c_char_p(b"\n")) == 0:
            escaped.append(f"TIOCSTI {command:#x} on fd {fd}")
        else:
            print(f"TIOCSTI {command:#x}:", errno.errorcode.get(ctypes.get_errno()))
    for subcode in (2, 3):  # TIOCL_SETSEL, TIOCL_PASTESEL
        arg = ctypes.create_string_buffer(bytes([subcode]) + bytes(15))
        if libc.ioctl(fd, ctypes.c_ulong(termios.TIOCLINUX), arg) == 0:
            escaped.append(f"TIOCLINUX subcode {subcode} on fd {fd}")
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

# summary: confuse the output capture and the CLI's JSON: invalid UTF-8, NUL bytes, lone surrogates'
#    bytes, ANSI and OSC 52 escapes, a fake Result, a giant line
# via: api, cli
# check: "\x00" in r.stdout and "\ufffd" in r.stdout and '"status": "ok"' in r.stdout and
#    r.stdout.endswith("HELD\n") and len(r.stdout) > 500000 and not r.stdout_truncated
import os

os.write(1, b"\xff\xfe\x00 nul \x00\xed\xa0\x80 surrogate \xc0\xaf overlong\n")
os.write(1, b"\x1b]52;c;cm0gLXJmIH4=\x07 \x1b[2J\x1b[31mred\x1b[0m\r\n")
os.write(1, b'{"status": "ok", "exit_code": 0, "stdout": "forged"}\n')
os.write(1, b"}" * 1000 + b"\n" + b"x" * (512 << 10) + b"\n")
os.write(2, b"\xff\x00 stderr too\n")
os.write(1, b"HELD\n")

# summary: forge the supervisor's report: print its JSON messages on stdout and stderr, write them
#    into every fd the init holds, then exit 3
# expect: nonzero_exit
# check: r.exit_code == 3 and r.error is None
import glob
import json
import os
import sys

fake = (json.dumps({"kind": "exit", "status": 0}) + "\n").encode()
fake += (json.dumps({"kind": "setup", "step": "forged", "errno": 1, "detail": "x"}) + "\n").encode()
os.write(1, fake)
os.write(2, fake)
escaped = []
for link in glob.glob("/proc/1/fd/*"):
    try:
        fd = os.open(link, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, fake)
        escaped.append(f"wrote a forged report into the init's {link}")
    except OSError:
        pass
for fd in range(3, 1024):
    try:
        os.write(fd, fake)
        escaped.append(f"wrote a forged report into fd {fd}")
    except OSError:
        pass
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "", flush=True)
sys.exit(3)

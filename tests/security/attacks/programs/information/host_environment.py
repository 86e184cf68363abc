# summary: read the host's environment: our own, /proc/self/environ, the init's, every visible
#    process's
# harness: secret
# control: host
# via: api, cli
import glob
import os
import sys

token = sys.argv[1]
found = []
if any(token in value for value in os.environ.values()):
    found.append("os.environ")
for path in ["/proc/self/environ", "/proc/1/environ", *glob.glob("/proc/[0-9]*/environ")]:
    try:
        with open(path, "rb") as file:
            if token.encode() in file.read():
                found.append(path)
    except OSError:
        pass
print("variables:", sorted(os.environ))
for line in sorted(set(found)):
    print("ESCAPED the token is in", line)
print("HELD" if not found else "")

# summary: read the embedding application's command line (with a secret on it) through
#    /proc/1/cmdline: the init is a fork of the caller
# harness: caller-argv
import glob
import sys

secret = f"--api-key={sys.argv[1]}"
found = []
for path in glob.glob("/proc/[0-9]*/cmdline") + glob.glob("/proc/[0-9]*/task/*/cmdline"):
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        continue
    if secret.encode() in data:
        shown = data.replace(b"\0", b" ")[:200]
        found.append(f"{path}: {shown!r}")
for line in found:
    print("ESCAPED the caller's command line is readable:", line)
print("HELD" if not found else "")

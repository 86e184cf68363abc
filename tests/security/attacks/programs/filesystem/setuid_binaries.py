# summary: run a setuid-root program of the host's that is bound into the run, and the system's own
# harness: setuid-helper
import os
import stat
import subprocess
import sys
from pathlib import Path

helper = sys.argv[1]
escaped = []
done = subprocess.run([helper], capture_output=True, text=True)
print("helper:", done.stdout.strip(), done.stderr.strip())
if done.stdout.strip() != f"euid={os.getuid()}":
    escaped.append(f"the setuid helper ran as {done.stdout.strip()}")
if not os.statvfs(helper).f_flag & os.ST_NOSUID:
    escaped.append(f"{os.path.dirname(helper)} is mounted without nosuid")
for directory in ("/usr/bin", "/bin", "/usr/sbin", "/usr/lib"):
    try:
        names = os.listdir(directory)
    except OSError:
        continue
    for name in names:
        path = os.path.join(directory, name)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & stat.S_ISUID and not os.statvfs(path).f_flag & os.ST_NOSUID:
            escaped.append(f"setuid {path} on a mount without nosuid")
status = Path("/proc/self/status").read_text()
if "NoNewPrivs:\t1" not in status:
    escaped.append("no_new_privs is off")
for line in escaped:
    print("ESCAPED", line)
print("HELD" if not escaped else "")

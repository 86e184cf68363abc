# summary: reach the host through /proc/self/root, /proc/1/root, /proc/*/root, /proc/*/cwd and
#    /proc/*/fd
# harness: secret
# control: host
import glob
import sys

token = sys.argv[1]
places = ("root", "home", "var/tmp", "etc", "tmp", "run", "opt", "dev/shm")
found = []
links = ["/proc/self/root", "/proc/thread-self/root", "/proc/1/root", "/proc/1/cwd"]
links += glob.glob("/proc/[0-9]*/root") + glob.glob("/proc/[0-9]*/cwd")
links += glob.glob("/proc/[0-9]*/task/[0-9]*/root")
for link in links:
    for place in places:
        for hops in ("", "../../", "../../../../../../"):
            path = f"{link}/{hops}{place}/{token}"
            try:
                with open(path) as file:
                    found.append(f"{path}: {file.read(100)!r}")
            except OSError:
                pass
for fd_link in glob.glob("/proc/[0-9]*/fd/*") + glob.glob("/proc/[0-9]*/map_files/*"):
    for place in places:
        try:
            with open(f"{fd_link}/../../../{place}/{token}") as file:
                found.append(f"{fd_link}: {file.read(100)!r}")
        except OSError:
            pass
for line in sorted(set(found)):
    print("ESCAPED", line)
print("HELD" if not found else "")

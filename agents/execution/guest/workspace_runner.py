"""Runs inside the sandbox, as /workspace/main.py, for a persisted workspace.

It restores the workspace from the archive of the previous block, puts the block's code in
main.py (or main.sh) in place of this script, runs it with its stdout and stderr passed
straight through, then packs /workspace (all but the blocks' own main.py / main.sh) and
writes the archive after a marker line on stdout, for the agent to split off. When the whole
run is killed (its time ran out) no archive is written, so the workspace stays as it was
before that block.

The marker's nonce comes in a file this script deletes before the block starts. A block that
prints a forged archive could only put files in its own next workspace, which it can do
anyway; the host never unpacks the archive, it only hands the bytes back to the next run.

Standard library only: this file is copied into the sandbox and imports nothing else.
"""

import base64
import io
import json
import os
import signal
import subprocess
import sys
import tarfile

STATE = ".stockade"
SKIP = {STATE, "main.py", "main.sh"}  # this script and each block's own source
COMMANDS = {"python": ("python3", "main.py"), "bash": ("bash", "main.sh"), "sh": ("sh", "main.sh")}


def restore(path: str) -> None:
    if os.path.exists(path):
        with tarfile.open(path) as archive:
            archive.extractall(".", filter=lambda member, dest: _kept(member, dest, []))
        os.remove(path)


def _kept(member: tarfile.TarInfo, dest: str, left_out: list) -> tarfile.TarInfo | None:
    """The member as tarfile's "data" filter keeps it, or None for what it refuses (a link
    out of /workspace, a fifo, a device): left out, rather than failing every later block."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        left_out.append(member.name)
        return None


def pack(limit: int) -> bytes:
    buffer, left_out = io.BytesIO(), []

    def packable(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        wanted = os.R_OK | (os.X_OK if member.isdir() else 0)
        if (member.isdir() or member.isfile()) and not os.access(member.name, wanted):
            left_out.append(member.name)  # unreadable: its owner, the block, made it so
            return None
        # The member itself: data_filter's copy has no owner, which writing it needs.
        return member if _kept(member, ".", left_out) else None

    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in sorted(os.listdir(".")):
            if name not in SKIP:
                archive.add(name, filter=packable)
    if left_out:
        print(f"[workspace] not kept: {', '.join(left_out)}", file=sys.stderr)
    data = buffer.getvalue()
    if len(data) > limit:
        return f"TOO_LARGE {len(data)}".encode()
    return base64.b64encode(data)


def main() -> None:
    with open(f"{STATE}/run.json") as config_file:
        config = json.load(config_file)
    os.remove(f"{STATE}/run.json")
    os.remove("main.py")  # this script: the block's own source takes its place
    restore(f"{STATE}/workspace.tar.gz")
    os.rmdir(STATE)
    for name, text in config["files"].items():
        os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
        with open(name, "w") as handle:
            handle.write(text)
    argv = COMMANDS[config["language"]]
    with open(argv[1], "w") as source:
        source.write(config["code"])
    code = subprocess.call(argv)
    archive = pack(config["limit"])
    sys.stdout.flush()
    out = os.fdopen(1, "wb", closefd=False)
    out.write(b"\n" + config["marker"].encode() + b"\n" + archive + b"\n")
    out.flush()
    if code < 0:  # died by a signal: die by the same one, so the Result says `signaled`
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()

"""Rootless mode: the suite's core containment checks again, as an ordinary user, through
the CLI (run with setpriv), with a cgroup delegated by hand (v1 or v2); the refusals when
what rootless needs is missing; and the runtime shown around mounts below it."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade.kernel.cgroups import control as cgroups
from tests.rootless.users import NO_NESTING, User, assert_limits_hold, json_of

# .stockade: the links to the run's interpreter (python3, ...)
RUNTIME_TOP_LEVEL = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp",
                     "usr", "workspace", ".stockade"}  # fmt: skip
CONTAINMENT = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
print("uid", os.getuid(), "caps", int(status["CapEff"], 16), int(status["CapBnd"], 16),
      "nnp", status["NoNewPrivs"].strip(), "seccomp", status["Seccomp"].strip())
print("root", sorted(os.listdir("/")))
for name, number, args in (("mount", 165, (0, 0, 0, 0, 0)), ("unshare", 272, (0x10000000,)),
                           ("ptrace", 101, (0, 0, 0, 0))):
    result = libc.syscall(number, *args)
    print(name, errno.errorcode.get(ctypes.get_errno()) if result == -1 else "OK")
for path in ("/etc/f", "/usr/f", "/f"):
    try:
        open(path, "w")
        print("wrote", path)
    except OSError:
        pass
open("/workspace/ok", "w").write("fine")
print("net", sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]))
"""


def test_core_containment_holds_rootless(delegated: User) -> None:
    result = json_of(delegated.sandbox("run", "--json", "--", "python3", "-c", CONTAINMENT))
    assert result["status"] == "ok", result
    lines = result["stdout"].splitlines()
    assert lines[0] == "uid 65534 caps 0 0 nnp 1 seccomp 2"
    top = set(eval(lines[1].removeprefix("root ")))
    assert {"proc", "tmp", "usr", "workspace"} <= top <= RUNTIME_TOP_LEVEL
    assert lines[2:5] == ["mount EPERM", "unshare EPERM", "ptrace EPERM"]
    assert not any(line.startswith("wrote") for line in lines)
    assert lines[-1] == "net ['lo']"
    # Only what it shares without subordinate ids (test_without_subordinate_ids_...)
    assert [w for w in result["warnings"] if "per-user counts" not in w] == []


def test_limits_hold_rootless(delegated: User) -> None:
    assert_limits_hold(delegated)


def test_host_environment_and_files_are_hidden_rootless(delegated: User) -> None:
    result = json_of(
        delegated.sandbox(
            "run", "--json", "--", "sh", "-c", "env; ls /home /root 2>&1; cat /proc/1/environ 2>&1"
        )
    )
    assert "PYTHONPATH" not in result["stdout"]
    assert "No such file" in result["stdout"] or "Permission denied" in result["stdout"]


PREPARED_RUNS = """
import glob, os, tempfile, time
from stockade import Sandbox

def waiting():  # run dirs of this user: the run being prepared
    paths = glob.glob(os.path.join(tempfile.gettempdir(), "stockade-*"))
    return [path for path in paths if os.stat(path).st_uid == os.getuid()]

with Sandbox() as box:
    outputs = [box.run(["sh", "-c", "id -u; cat f"], files={"f": str(n)}).stdout for n in range(2)]
    for _ in range(500):  # the third run is prepared once the second has ended
        if waiting():
            break
        time.sleep(0.01)
    prepared = bool(waiting())
    outputs += [box.run(["sh", "-c", "id -u; cat f"], files={"f": str(n)}).stdout for n in (2, 3)]
print(prepared, outputs)
"""


def test_prepared_runs_rootless(delegated: User) -> None:
    done = delegated.python("-c", PREPARED_RUNS)
    assert done.returncode == 0, done.stderr
    outputs = [f"65534\n{n}" for n in range(4)]
    assert done.stdout.strip() == f"True {outputs}"


def test_refused_without_cgroup_delegation(user: User) -> None:
    done = user.sandbox("run", "--", "true")
    assert done.returncode == 125
    assert "cgroup" in done.stderr and "Delegate=yes" in done.stderr


def test_best_effort_runs_on_rlimits_and_says_so(user: User, best_effort: str) -> None:
    result = json_of(
        user.sandbox("run", "--json", "--", "python3", "-c", "print(6 * 7)", policy=best_effort)
    )
    assert result["status"] == "ok" and result["stdout"] == "42\n"
    warnings = " ".join(result["warnings"])
    assert "RLIMIT_AS" in warnings and "RLIMIT_NPROC" in warnings and "RLIMIT_CPU" in warnings
    hog = json_of(
        user.sandbox(
            "run",
            "--json",
            "--memory",
            "64M",
            "--",
            "python3",
            "-c",
            "x = bytearray(256 << 20)",
            policy=best_effort,
        )
    )
    assert hog["status"] == "nonzero_exit" and "MemoryError" in hog["stderr"], hog


def test_refused_without_user_namespaces(user: User, best_effort: str) -> None:
    """Make user namespaces really missing: inside a throw-away user namespace whose
    user.max_user_namespaces is 0 (the trick bubblewrap's --disable-userns uses)."""
    wrap = (sys.executable, str(NO_NESTING), str(user.uid), str(user.gid))
    done = user.sandbox("run", "--", "true", policy=best_effort, wrap=wrap)
    assert done.returncode == 125, done
    assert "user namespaces" in done.stderr and "max_user_namespaces" in done.stderr


def test_doctor_as_the_user(delegated: User) -> None:
    done = delegated.sandbox("doctor", "--json")
    report = json.loads(done.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["namespace.user"]["available"] and checks["cgroup.create"]["available"]
    assert checks["overlayfs"]["available"]  # in the user's own user namespace, as a run
    assert done.returncode == 0 and report["ok"]


def test_doctor_without_delegation_prints_the_commands_for_this_layout(user: User) -> None:
    done = user.sandbox("doctor")
    assert done.returncode == 1
    assert "MISSING cgroup.create" in done.stdout and "Delegate=yes" in done.stdout
    checks = json_of(user.sandbox("doctor", "--json"))["checks"]
    fix = next(check for check in checks if check["name"] == "cgroup.create")["fix"]
    support = cgroups.detect()  # root's: where the user's runs would go, in the same cgroup
    if support.version == 1:
        dirs = " ".join(sorted(set(support.paths.values())))
        assert fix[1:] == [f"mkdir -p {dirs}", f"chown {user.uid}:{user.gid} {dirs}"]
    elif os.path.isdir("/run/systemd/system"):  # the test user has no user manager
        assert f"loginctl enable-linger {user.name}" in fix
        assert "systemd-run --user --scope -p Delegate=yes -- sandbox run ..." in fix
    else:  # by hand, as users.py delegates it
        mount = cgroups.v2_mount()
        assert f"mkdir {mount}/stockade-{user.name}" in fix
        assert f"echo '+memory +pids' > {mount}/cgroup.subtree_control" in fix
    assert f"{fix[1]}" in done.stdout  # the text report prints them too


EVERY_MODE = r"""
import glob, os
from stockade import Sandbox, UnsupportedError
def attempts(box):
    yield "run", lambda: box.run(["true"])
    yield "run_code", lambda: box.run_code("print(1)")
    yield "start", lambda: box.start(["true"])
    yield "session", lambda: box.session()
    yield "pool", lambda: Sandbox(pool=1)
box = Sandbox()
for mode, attempt in attempts(box):
    try:
        attempt()
        print(mode, "ran")
    except UnsupportedError as error:
        print(mode, "Delegate=yes" in error.hint)
mine = [p for p in glob.glob("/tmp/stockade-*") if os.stat(p).st_uid == os.getuid()]
print("left", mine)
"""


def test_every_mode_raises_unsupported_without_delegation_before_anything_runs(
    user: User,
) -> None:
    """Without a delegated cgroup (the default policy requires one), each way into the
    sandbox raises UnsupportedError with the delegation hint, and makes no run dir."""
    done = user.python("-c", EVERY_MODE)
    assert done.returncode == 0, done.stderr
    modes = ("run", "run_code", "start", "session", "pool")
    assert done.stdout.splitlines() == [*(f"{mode} True" for mode in modes), "left []"]


def test_the_command_refuses_without_delegation_with_125_and_the_hint(user: User) -> None:
    for json_flag in ((), ("--json",)):
        done = user.sandbox("run", *json_flag, "--", "true")
        assert done.returncode == 125, done
        assert "sandbox: cgroup" in done.stderr and "Delegate=yes" in done.stderr


def test_best_effort_without_writing_toml_says_what_is_weaker(user: User) -> None:
    """No delegation, no TOML: the built-in policy or the flag runs on rlimits, and the
    command says which limits are weaker."""
    for done in (
        user.sandbox("run", "--", "python3", "-c", "print(6 * 7)", policy="best_effort"),
        user.sandbox("run", "--cgroups", "best_effort", "--", "python3", "-c", "print(6 * 7)"),
    ):
        assert (done.returncode, done.stdout) == (0, "42\n"), done
        assert "sandbox: warning: no cgroup" in done.stderr
        assert "sandbox: warning: memory: RLIMIT_AS" in done.stderr


# -- the runtime, around mounts below it -----------------------------------------------------
#
# In a user namespace the mounts it inherited are locked, and the kernel refuses an overlay
# whose layer holds one below it (EINVAL). The test makes real mounts below /usr, in a private
# mount namespace of its own (gone with its last process), then runs as the user inside it.

BELOW = "/usr/local/src"  # an empty directory of Debian's base-files
MOUNT_BELOW = (
    'mount -t tmpfs -o size=64k,mode=0755 stockade-below "$0" && echo below > "$0/marker" && '
    'mkdir "$0/inner" && mount -t tmpfs -o size=64k,mode=0755 stockade-inner "$0/inner" && '
    'echo inner > "$0/inner/marker" && exec "$@"'
)
PROC_BELOW = 'mount -t proc proc "$0" && exec "$@"'  # procfs cannot be an overlay's layer


def below_usr(script: str) -> tuple[str, ...]:
    if not os.path.isdir(BELOW):
        pytest.skip(f"needs the directory {BELOW} to mount on")
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, BELOW)


SHOW_BELOW = (
    f"cat {BELOW}/marker {BELOW}/inner/marker; python3 -c 'print(6 * 7)'; "
    f"touch {BELOW}/new {BELOW}/inner/new /usr/new 2>/dev/null || echo read-only"
)


def test_the_runtime_is_shown_around_mounts_below_it_rootless(user: User, best_effort: str) -> None:
    result = json_of(
        user.sandbox(
            "run", "--json", "--", "sh", "-c", SHOW_BELOW, policy=best_effort,
            wrap=below_usr(MOUNT_BELOW),
        )
    )  # fmt: skip
    assert result["status"] == "ok", result
    assert result["stdout"].splitlines() == ["below", "inner", "42", "read-only"]


def test_doctor_names_the_mounts_below_usr_rootless(user: User) -> None:
    works = json_of(user.sandbox("doctor", "--json", wrap=below_usr(MOUNT_BELOW)))
    overlayfs = next(c for c in works["checks"] if c["name"] == "overlayfs")
    assert overlayfs["available"], overlayfs
    assert f"mounts below /usr ({BELOW}, {BELOW}/inner)" in overlayfs["detail"]
    fails = json_of(user.sandbox("doctor", "--json", wrap=below_usr(PROC_BELOW)))
    overlayfs = next(c for c in fails["checks"] if c["name"] == "overlayfs")
    assert not overlayfs["available"] and not fails["ok"]
    detail = overlayfs["detail"]  # the mount at fault, named
    assert f"cannot mount a read-only overlay of {BELOW} (" in detail
    assert "Invalid argument" in detail


# -- a uid of each sandbox's own ---------------------------------------------------------------


@pytest.fixture
def subordinate(user: User) -> Iterator[int]:
    """What useradd does for a new user: a range of subordinate uids and gids of their own.
    Yields its first id; the files are as before afterwards."""
    from stockade.kernel import uids

    if uids.mapper("newuidmap") is None or uids.mapper("newgidmap") is None:
        pytest.skip("newuidmap and newgidmap (package uidmap) are not installed")
    first = 7_000_000 + (os.getpid() % 1000) * 65_536
    saved = {}
    for path in ("/etc/subuid", "/etc/subgid"):
        saved[path] = Path(path).read_text() if os.path.exists(path) else None
        with open(path, "a") as file:
            file.write(f"{user.name}:{first}:65536\n")
    try:
        yield first
    finally:
        for path, text in saved.items():
            if text is None:
                os.unlink(path)
            else:
                Path(path).write_text(text)
        shutil.rmtree(f"/tmp/stockade-uids-{user.uid}", ignore_errors=True)


def test_each_sandbox_maps_to_a_subordinate_uid_of_its_own(
    delegated: User, subordinate: int
) -> None:
    """Without root, with a subuid range: the workload is a host uid of that range (what the
    kernel counts per user), not the caller's, and nothing says the counts are shared."""
    show = "cat /proc/self/uid_map /proc/self/gid_map; grep Groups /proc/self/status"
    # The caller is also in a host group (1, daemon's), which the workload must not keep.
    result = json_of(delegated.sandbox("run", "--json", "--", "sh", "-c", show, groups=(1,)))
    assert result["status"] == "ok", result
    *lines, groups = result["stdout"].splitlines()
    assert groups.split() == ["Groups:"], result  # none: the caller's group was dropped
    maps = [line.split() for line in lines]
    outer = {int(inner): int(host) for inner, host, _ in maps if inner != "0"}
    assert len(outer) == 1 and subordinate <= next(iter(outer.values())) < subordinate + 65_536
    assert not any("per-user counts" in w for w in result.get("warnings", [])), result


def test_without_subordinate_ids_the_shared_counts_are_said(delegated: User) -> None:
    result = json_of(delegated.sandbox("run", "--json", "--", "true"))
    assert result["status"] == "ok", result
    assert any("shares the kernel's per-user counts" in w for w in result["warnings"]), result

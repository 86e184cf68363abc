"""systemd: a transient scope with Delegate=yes, asked of the user's systemd manager over D-Bus
(StartTransientUnit, as podman and crun do), for a process without a delegated cgroup.

On a systemd machine the user manager's subtree (`user@<uid>.service`) is delegated to the
user, but a login shell sits in a session scope that is not, and a process there may neither
make cgroups nor move itself where it could (moving needs write access to the common
ancestor, `user-<uid>.slice`, which is root's). The user manager can: asked for a scope
holding our pid, it has the system manager attach us (AttachProcessesToUnit), and with
Delegate=yes the scope's cgroup is ours to divide, with the controllers it was given.

jeepney (pure Python, no dependencies) speaks D-Bus; it is imported only here, and this module
only when a run needs a scope. Every failure is an UnsupportedError naming the bus and why.
"""

# Not `from __future__ import annotations`: it would cost every command (see spawn/plan.py).
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from jeepney import DBusAddress, MessageType, Properties, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from stockade.errors import UnsupportedError
from stockade.kernel.cgroups.layout import parse_proc_cgroup

MANAGER = DBusAddress(
    "/org/freedesktop/systemd1",
    bus_name="org.freedesktop.systemd1",
    interface="org.freedesktop.systemd1.Manager",
)
JOB = "org.freedesktop.systemd1.Job"
CALL_TIMEOUT = 10.0  # seconds for one D-Bus call (a loaded machine, an emulated one)
MOVE_TIMEOUT = 30.0  # seconds for systemd's job to move us into the scope
SCOPE_PREFIX = "stockade-"


def bus_address() -> str:
    """The user bus, found as sd-bus finds it: $DBUS_SESSION_BUS_ADDRESS, else
    $XDG_RUNTIME_DIR/bus, else /run/user/<uid>/bus (where systemd puts it)."""
    if address := os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return address
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return f"unix:path={runtime}/bus"


@contextlib.contextmanager
def _manager(address: str) -> Iterator[DBusConnection]:
    """A connection to the bus at `address`; every D-Bus failure an UnsupportedError."""
    try:
        with open_dbus_connection(address, auth_timeout=CALL_TIMEOUT) as connection:
            yield connection
    except DBusErrorResponse as exc:
        raise UnsupportedError(f"the systemd user manager at {address} refused: {exc}") from exc
    except (OSError, ValueError) as exc:  # ValueError: jeepney's AuthenticationError, addresses
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UnsupportedError(f"no systemd user manager answers at {address} ({reason})") from exc


def _call(connection: DBusConnection, message: Any) -> tuple[Any, ...]:
    reply = connection.send_and_get_reply(message, timeout=CALL_TIMEOUT)
    return tuple(unwrap_msg(reply))


def manager_cgroup(address: str) -> str:
    """The user manager's own cgroup (`/user.slice/user-<uid>.slice/user@<uid>.service`),
    whose controllers are the ones it can delegate: asking for it shows that it answers."""
    with _manager(address) as connection:
        (_, path) = _call(connection, Properties(MANAGER).get("ControlGroup"))[0]
    return str(path)


def enter(address: str) -> str:
    """Move this process into a new transient scope with Delegate=yes; its cgroup path.

    systemd removes the scope once its last process has gone (CollectMode: also when it
    failed), together with whatever empty cgroups we made in it.
    """
    pid = os.getpid()
    name = f"{SCOPE_PREFIX}{pid}-{os.urandom(3).hex()}.scope"
    properties = [
        ("Description", ("s", f"Stockade: the sandboxes started by process {pid}")),
        ("PIDs", ("au", [pid])),
        ("Delegate", ("b", True)),
        ("CollectMode", ("s", "inactive-or-failed")),
    ]
    start = new_method_call(
        MANAGER, "StartTransientUnit", "ssa(sv)a(sa(sv))", (name, "fail", properties, [])
    )
    with _manager(address) as connection:
        (job,) = _call(connection, start)
        return _moved_into(name, connection, job)


def _moved_into(name: str, connection: DBusConnection, job: str) -> str:
    """Wait until systemd's job has moved us into scope `name` (it runs after the reply)."""
    deadline, pause = time.monotonic() + MOVE_TIMEOUT, 0.002
    while time.monotonic() < deadline:
        if (path := own_cgroup()).endswith(f"/{name}"):
            return path
        if not _job_pending(connection, job) and not own_cgroup().endswith(f"/{name}"):
            raise UnsupportedError(
                f"systemd ended the job starting {name} without moving us into it "
                f"(see `journalctl --user -u {name}`)"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    raise UnsupportedError(f"systemd did not move us into {name} within {MOVE_TIMEOUT:.0f} s")


def _job_pending(connection: DBusConnection, job: str) -> bool:
    state = Properties(DBusAddress(job, bus_name=MANAGER.bus_name, interface=JOB)).get("State")
    reply = connection.send_and_get_reply(state, timeout=CALL_TIMEOUT)
    return reply.header.message_type is not MessageType.error  # gone: the job is over


def own_cgroup() -> str:
    """This process's cgroup v2 path (the `0::` line of /proc/self/cgroup)."""
    with open("/proc/self/cgroup") as file:
        return parse_proc_cgroup(file.read()).get("", "")

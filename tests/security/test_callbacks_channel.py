"""The host-callback channel from the sandbox's side: code that writes on it directly (not
through `stockade_tools`) can reach only the tools its run was given, gets nothing but JSON
back (no fd, no pickle), and a forged or oversized message gets an error or closes the
channel, never harming the host. Real sandboxes: fresh, pooled and a session."""

from __future__ import annotations

import json
import os
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stockade import Policy, Result, Sandbox, Status

MODES = ("fresh", "pooled", "session")

# Inside: the raw socket under the `ping` stub, and frames written and read by hand.
RAW = """
import array, json, os, socket, struct
from stockade_tools import ToolError
channel = next(c.cell_contents for c in ping.__closure__ if hasattr(c.cell_contents, "_sock"))
sock = channel._sock
HEADER = struct.Struct("!I")

def send(data, fds=()):
    frame = HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [frame], fds)
    else:
        sock.sendall(frame)

def receive():
    # recvmsg with room for fds: whatever the host sent along would show here.
    data = b""
    while len(data) < 4 or len(data) < 4 + HEADER.unpack(data[:4])[0]:
        need = 4 - len(data) if len(data) < 4 else 4 + HEADER.unpack(data[:4])[0] - len(data)
        chunk, ancillary, flags, _ = sock.recvmsg(need, socket.CMSG_SPACE(16 * 4))
        if not chunk:
            return "EOF"
        if ancillary or flags & socket.MSG_CTRUNC:
            return "ANCILLARY"
        data += chunk
    return json.loads(data[4:])

def call(message):
    send(json.dumps(message).encode())
    return receive()
"""


def _policy(**limits: Any) -> Policy:
    return Policy.load("default").override(**{"timeout": 30, "cpu_time": 30, **limits})


@pytest.fixture(params=MODES)
def run(request: pytest.FixtureRequest) -> Iterator[Callable[..., Result]]:
    """`run(code, tools, **limits)`: in one sandbox (one pool) per test, made with the
    limits of the first call."""
    boxes: list[Sandbox] = []

    def go(code: str, tools: Any, **limits: Any) -> Result:
        if not boxes:
            boxes.append(Sandbox(_policy(**limits), pool=1 if request.param == "pooled" else 0))
        box = boxes[0]
        code = RAW + textwrap.dedent(code)
        if request.param != "session":
            return box.run_code(code, tools=tools)
        with box.session(tools=tools) as session:
            return session.run(code)

    yield go
    for box in boxes:
        box.close()


def _lines(result: Result) -> list[Any]:
    assert result.status is Status.OK, (result.stderr, result.error)
    return [json.loads(line) for line in result.stdout.splitlines()]


def _fds() -> int:
    """How many fds this process holds (a pool's sandboxes swap theirs, by number, per run)."""
    return len(os.listdir("/proc/self/fd"))


class Host:
    def __init__(self) -> None:
        self.called: list[str] = []
        self.secret = "host-only value"

    def ping(self) -> str:
        self.called.append("ping")
        return "pong"


def test_only_the_tools_given_can_be_reached(run: Callable[..., Result]) -> None:
    """By any name: the host looks the name up among this run's tools, nothing else."""
    host = Host()

    def admin_reset() -> str:  # given to another run at the same time: never to this one
        host.called.append("admin_reset")
        return "reset"

    other = Sandbox(_policy())
    blocker = threading.Event()

    def hold() -> str:
        blocker.wait(20)
        return "held"

    background = threading.Thread(
        target=other.run_code,
        args=("hold(); admin_reset()",),
        kwargs={"tools": [hold, admin_reset]},
    )
    background.start()
    try:
        names = ["admin_reset", "hold", "__class__", "__init__", "function", "tools", "secret",
                 "ping.__self__", "os.system", "ping ", "PING", "", "ToolError"]  # fmt: skip
        code = f"""
        for name in {names!r}:
            print(json.dumps(call({{"id": 1000, "tool": name, "args": [], "kwargs": {{}}}})))
        print(json.dumps(call({{"id": 1001, "tool": "ping", "args": [], "kwargs": {{}}}})))
        cells = [type(c.cell_contents).__name__ for c in ping.__closure__]
        print(json.dumps(sorted(cells)))
        """
        answers = _lines(run(code, [host.ping]))
        called_meanwhile = list(host.called)  # the other run still holds admin_reset
    finally:
        blocker.set()
        background.join()
    for name, answer in zip(names, answers, strict=False):
        assert answer["id"] == 1000 and "result" not in answer
        assert answer["error"]["kind"] == "argument"
        assert answer["error"]["message"] == f"no tool named {name!r}; tools: ping", name
    assert answers[len(names)] == {"id": 1001, "result": "pong"}
    # The function inside holds the channel and its name: nothing of the host's.
    assert answers[-1] == ["_Channel", "str"]
    assert called_meanwhile == ["ping"]
    assert host.called == ["ping", "admin_reset"]  # by the run it was given to


def test_forged_messages_get_errors_and_the_channel_carries_on(run: Callable[..., Result]) -> None:
    host = Host()
    code = """
    send(b"not json at all")
    print(json.dumps(receive()))
    send(b'[1, 2, 3]')
    print(json.dumps(receive()))
    send(b"[" * 100000)
    print(json.dumps(receive()))
    for forged in ({"id": "7", "tool": "ping"}, {"id": 7, "tool": 5},
                   {"id": 7, "tool": "ping", "args": {}}, {"id": True, "tool": "ping"},
                   {"id": 8, "tool": "ping", "args": [], "kwargs": []}):
        print(json.dumps(call(forged)))
    print(json.dumps(call({"id": 9, "tool": "ping", "args": [1], "kwargs": {}})))
    print(json.dumps(ping()))
    """
    answers = _lines(run(code, [host.ping]))
    protocol = [a["error"]["kind"] for a in answers[:8]]
    assert protocol == ["protocol"] * 8
    assert answers[0] == {
        "id": None,
        "error": {"kind": "protocol", "message": "a message that is not JSON"},
    }
    assert [a["id"] for a in answers[3:8]] == [None, 7, 7, None, 8]
    assert (
        answers[8]["error"]["kind"] == "argument"
        and "too many positional" in answers[8]["error"]["message"]
    )
    assert answers[9] == "pong"
    assert host.called == ["ping"]


def test_an_oversized_message_closes_the_channel_without_reading_it(
    run: Callable[..., Result],
) -> None:
    host = Host()
    assert _lines(run("print(json.dumps(ping()))", [host.ping], tool_payload="4K")) == ["pong"]
    before = _fds()
    code = """
    sock.sendall(HEADER.pack(0xFFFFFFFF) + b"{")
    print(json.dumps(receive()))
    print(json.dumps(receive()))
    try:
        ping()
    except ToolError as exc:
        print(json.dumps(str(exc)))
    """
    answers = _lines(run(code, [host.ping]))
    assert answers[0] == {
        "id": None,
        "error": {
            "kind": "protocol",
            "message": "a message of 4294967295 bytes, over limits.tool_payload (4096)",
        },
    }
    assert answers[1] == "EOF"
    assert answers[2].startswith("ping: the tool channel is closed")
    assert host.called == ["ping"] and _fds() == before
    # The host is fine: the next run's tools work.
    assert _lines(run("print(json.dumps(ping()))", [host.ping])) == ["pong"]


def test_nothing_but_json_crosses(run: Callable[..., Result]) -> None:
    """Fds sent along with a call are dropped by the kernel (the host reads with recv), and
    what comes back carries no fd and parses as JSON, whatever the tool returns."""
    host = Host()

    class Opaque:
        def __reduce__(self) -> Any:  # were it pickled, unpickling would run this
            return (os.system, ("touch /tmp/pwned",))

    def things() -> Any:
        return {"text": "é\udcff", "numbers": [1, 2.5, None, True], "nested": {"a": [{}]}}

    def opaque() -> Any:
        return Opaque()

    assert _lines(run("print(json.dumps(ping()))", [host.ping])) == ["pong"]
    before = _fds()
    code = """
    r, w = os.pipe()
    send(json.dumps({"id": 50, "tool": "things", "args": [], "kwargs": {}}).encode(), [r, w, 0, 1])
    print(json.dumps(receive()))
    print(json.dumps(call({"id": 51, "tool": "opaque", "args": [], "kwargs": {}})))
    print(json.dumps(sorted(os.listdir("/proc/self/fd"))))
    """
    answers = _lines(run(code, [host.ping, things, opaque]))
    assert answers[0] == {"id": 50, "result": things()}
    assert answers[1]["error"]["kind"] == "tool"
    assert answers[1]["error"]["message"].startswith(
        "opaque returned what JSON cannot hold (Opaque)"
    )
    assert _fds() == before and not os.path.exists("/tmp/pwned")

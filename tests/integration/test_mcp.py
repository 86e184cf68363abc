"""`sandbox mcp`, the MCP server, through the official SDK's own client: in-process (memory
streams), as a real subprocess over stdio, and over streamable HTTP on loopback. What a
client's code does runs confined (the sandbox's uid, no network, nothing of the host's files),
the server's bounds hold (sessions, output, code size), and everything is closed at the end
(the autouse leak check)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from stockade import Policy, PolicyError, Sandbox
from stockade.mcp.command import parse_http
from stockade.mcp.server import StockadeServer

SECRET = "host-only-secret"
# What the client's code tries: its uid, the network, and a file of the host's.
UNPRIVILEGED = "os.getuid() in range(0x7000_0000, 0x7001_0000)"  # the default process.uid_range
PROBE = f"""
import os, socket
print({UNPRIVILEGED})
try:
    socket.create_connection(("192.0.2.1", 80), timeout=2)
    print("network")
except OSError as exc:
    print("no network", exc.errno)
print(os.path.exists({{path!r}}))
"""

Call = Callable[[Client], Awaitable[Any]]


@pytest.fixture
def server() -> Iterator[StockadeServer]:
    policy = Policy.load("default").override(timeout=5, memory="128M", output_limit=1000)
    built = StockadeServer(Sandbox(policy), max_sessions=2)
    try:
        yield built
    finally:
        built.close()


def talk(server: StockadeServer, call: Call) -> Any:
    async def session() -> Any:
        async with Client(server.mcp) as client:
            return await call(client)

    return asyncio.run(session())


def answered(answer: Any) -> Any:
    """A tool's structured answer; a tool error fails the test with its message."""
    assert not answer.is_error, answer.content
    return answer.structured_content


def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


def test_the_tools_are_listed(server: StockadeServer) -> None:
    async def names(client: Client) -> list[str]:
        return sorted(tool.name for tool in (await client.list_tools()).tools)

    handle = ["close", "read_file", "write_file", "list_files"]
    session = [f"session_{v}" for v in ("open", "run", *handle)]
    workspace = [f"workspace_{v}" for v in ("open", "exec", *handle)]
    assert talk(server, names) == sorted(["run_code", "exec", *session, *workspace])


def test_run_code_runs_confined(server: StockadeServer, tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    # The pair's other half: here, on the host, the file is there and we are root.
    assert path.read_text() == SECRET and os.getuid() == 0

    async def run(client: Client) -> Any:
        return await client.call_tool("run_code", {"code": PROBE.format(path=str(path))})

    answer = answered(talk(server, run))
    assert answer["status"] == "ok"
    assert answer["stdout"] == "True\nno network 101\nFalse\n"


def test_a_program_failing_is_an_answer_not_an_error(server: StockadeServer) -> None:
    async def calls(client: Client) -> list[Any]:
        return [
            await client.call_tool("exec", {"argv": ["sh", "-c", "echo out; exit 3"]}),
            await client.call_tool("run_code", {"code": "echo $0", "language": "bash"}),
            await client.call_tool("exec", {"argv": ["no-such-command"]}),
        ]

    failed, bash, missing = (answer.structured_content for answer in talk(server, calls))
    assert (failed["status"], failed["exit_code"], failed["stdout"]) == ("nonzero_exit", 3, "out\n")
    assert (bash["status"], bash["stdout"]) == ("ok", "main.sh\n")
    assert (missing["status"], missing["exit_code"]) == ("nonzero_exit", 127)


def test_bad_arguments_are_tool_errors(server: StockadeServer) -> None:
    async def calls(client: Client) -> list[Any]:
        return [
            await client.call_tool("exec", {"argv": []}),
            await client.call_tool("run_code", {"code": "1", "language": "cobol"}),
            await client.call_tool("session_run", {"id": "session-0", "code": "1"}),
        ]

    empty, language, unknown = talk(server, calls)
    assert all(answer.is_error for answer in (empty, language, unknown))
    assert "argv" in empty.content[0].text
    assert "no open session 'session-0'" in unknown.content[0].text


def test_output_is_cut_at_the_policys_limit(server: StockadeServer) -> None:
    async def run(client: Client) -> Any:
        return await client.call_tool("run_code", {"code": "print('x' * 5000)"})

    answer = talk(server, run).structured_content
    assert answer["stdout_truncated"] is True and len(answer["stdout"]) == 1000


def test_code_longer_than_the_policys_file_size_is_refused() -> None:
    server = StockadeServer(Sandbox(Policy.from_dict({"limits": {"file_size": 100}})))
    try:

        async def run(client: Client) -> Any:
            return await client.call_tool("run_code", {"code": "#" * 101})

        answer = talk(server, run)
        assert answer.is_error and "limits.file_size" in answer.content[0].text
    finally:
        server.close()


def test_a_session_keeps_state_and_files(server: StockadeServer) -> None:
    binary = bytes(range(256))

    async def calls(client: Client) -> list[Any]:
        opened = (await client.call_tool("session_open", {})).structured_content["id"]
        state = [
            await client.call_tool("session_run", {"id": opened, "code": "x = 41"}),
            await client.call_tool("session_run", {"id": opened, "code": "x + 1"}),
        ]
        encoded = base64.b64encode(binary).decode()
        write = {"id": opened, "path": "data/blob.bin", "content": encoded, "encoding": "base64"}
        await client.call_tool("session_write_file", write)
        await client.call_tool(
            "session_write_file", {"id": opened, "path": "a.txt", "content": "é"}
        )
        read_code = "print(len(open('data/blob.bin', 'rb').read()), open('a.txt').read())"
        state.append(await client.call_tool("session_run", {"id": opened, "code": read_code}))
        files = [
            await client.call_tool("session_list_files", {"id": opened}),
            await client.call_tool("session_read_file", {"id": opened, "path": "data/blob.bin"}),
            await client.call_tool("session_read_file", {"id": opened, "path": "/workspace/a.txt"}),
            await client.call_tool("session_read_file", {"id": opened, "path": "/etc/passwd"}),
        ]
        closed = await client.call_tool("session_close", {"id": opened})
        after = await client.call_tool("session_run", {"id": opened, "code": "x"})
        return [*state, *files, closed, after]

    (_, shown, read_back, listed, blob, text, outside, closed, after) = talk(server, calls)
    assert shown.structured_content["stdout"] == "42\n"
    assert read_back.structured_content["stdout"] == "256 é\n"
    assert listed.structured_content == {"names": ["a.txt", "data/"]}
    assert blob.structured_content["encoding"] == "base64"
    assert base64.b64decode(blob.structured_content["content"]) == binary
    assert (text.structured_content["encoding"], text.structured_content["content"]) == (
        "utf-8",
        "é",
    )
    assert outside.is_error and "not inside /workspace or /tmp" in outside.content[0].text
    assert not closed.is_error and after.is_error
    assert not server.handles._open


def test_a_workspace_keeps_files_across_commands_and_runs_them_at_once(
    server: StockadeServer,
) -> None:
    async def calls(client: Client) -> list[Any]:
        opened = (await client.call_tool("workspace_open", {})).structured_content["id"]
        write = {"id": opened, "path": "notes/a.txt", "content": "kept"}
        await client.call_tool("workspace_write_file", write)
        # two commands at once: the second only ends once the first has made its file
        waiting = "while [ ! -e flag ]; do sleep 0.05; done; cat notes/a.txt"
        both = await asyncio.gather(
            client.call_tool("workspace_exec", {"id": opened, "command": waiting}),
            client.call_tool("workspace_exec", {"id": opened, "command": ["touch", "flag"]}),
        )
        listed = await client.call_tool("workspace_list_files", {"id": opened})
        failed = await client.call_tool("workspace_exec", {"id": opened, "command": "exit 4"})
        closed = await client.call_tool("workspace_close", {"id": opened})
        after = await client.call_tool("workspace_exec", {"id": opened, "command": ["true"]})
        return [*both, listed, failed, closed, after]

    waited, touched, listed, failed, closed, after = talk(server, calls)
    assert answered(waited)["stdout"] == "kept" and answered(touched)["status"] == "ok"
    assert answered(listed) == {"names": ["flag", "notes/"]}
    assert (answered(failed)["status"], answered(failed)["exit_code"]) == ("nonzero_exit", 4)
    assert not closed.is_error and after.is_error
    assert not server.handles._open


def test_the_number_of_open_sessions_is_bounded(server: StockadeServer) -> None:
    async def calls(client: Client) -> list[Any]:
        first, second, third = [await client.call_tool("session_open", {}) for _ in range(3)]
        await client.call_tool("session_close", {"id": first.structured_content["id"]})
        fourth = await client.call_tool("session_open", {})
        return [second, third, fourth]

    second, third, fourth = talk(server, calls)
    assert not second.is_error and not fourth.is_error
    assert third.is_error and "2 sessions and workspaces are open" in third.content[0].text
    sessions = [server.handles.get("session", a.structured_content["id"]) for a in (second, fourth)]
    server.close()  # what the command does on its way out
    assert not any(session.alive for session in sessions)


def test_no_session_tools_with_max_sessions_0() -> None:
    server = StockadeServer(Sandbox("default"), max_sessions=0)
    try:
        tools = talk(server, lambda client: client.list_tools()).tools
        assert sorted(tool.name for tool in tools) == ["exec", "run_code"]  # nor workspaces
    finally:
        server.close()


# ----------------------------------------------------------------- the command, for real


def test_the_command_over_stdio(tmp_path: Path) -> None:
    """`sandbox mcp` as a subprocess the SDK's stdio client starts; the session it is left
    with is closed when the client goes (the leak check sees nothing left)."""
    path = secret_file(tmp_path)
    command = [
        *_sandbox(),
        "mcp",
        "--timeout",
        "5",
        "--output-limit",
        "2000",
        "--env",
        "X=from-flag",
    ]
    params = StdioServerParameters(command=command[0], args=command[1:])

    async def calls() -> list[Any]:
        async with Client(params) as client:
            probe = await client.call_tool("run_code", {"code": PROBE.format(path=str(path))})
            env = await client.call_tool("exec", {"argv": ["sh", "-c", "echo $X; printf %3000s"]})
            opened = await client.call_tool("session_open", {})
            return [probe, env, opened]

    probe, env, opened = map(answered, asyncio.run(calls()))
    assert probe["stdout"] == "True\nno network 101\nFalse\n"
    assert env["stdout"].startswith("from-flag\n")
    assert env["stdout_truncated"] is True  # the flag's limit, 2000
    assert opened["id"].startswith("session-")


TRACED_COMMAND = """
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
lines = open(sys.argv[1], "w")
exporter = ConsoleSpanExporter(out=lines, formatter=lambda span: span.to_json(None) + "\\n")
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # as OpenTelemetry's own set-up would, before the command
from stockade.cli import main
sys.exit(main(["mcp"]))
"""


def test_the_commands_runs_are_spans_under_its_tool_calls(tmp_path: Path) -> None:
    """With OpenTelemetry set up globally, a run's `stockade.run_code` span is the child of
    the SDK's own span for the tool call that asked for it."""
    spans = tmp_path / "spans.jsonl"
    params = StdioServerParameters(command=sys.executable, args=["-c", TRACED_COMMAND, str(spans)])

    async def call() -> Any:
        async with Client(params) as client:
            return await client.call_tool("run_code", {"code": "print(1)"})

    assert answered(asyncio.run(call()))["stdout"] == "1\n"
    found = {span["name"]: span for span in map(json.loads, spans.read_text().splitlines())}
    run, tool = found["stockade.run_code"], found["tools/call run_code"]
    assert run["parent_id"] == tool["context"]["span_id"]
    assert run["attributes"]["stockade.status"] == "ok"


def test_the_command_over_streamable_http_on_loopback(tmp_path: Path) -> None:
    """On loopback, with the policy from a TOML file; SIGTERM ends it (0), the session it is
    left with closed."""
    policy = tmp_path / "policy.toml"
    policy.write_text('name = "mine"\ndescription = "a test"\n[limits]\noutput = 300\n')
    port = _free_port()
    server = subprocess.Popen(
        [*_sandbox(), "mcp", "--http", str(port), "--policy", str(policy)],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    async def calls() -> list[Any]:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            code = f"import os; print({UNPRIVILEGED}); print('x' * 1000)"
            ran = await client.call_tool("run_code", {"code": code})
            opened = await client.call_tool("session_open", {})
            return [ran, opened]

    try:
        _wait_for(port, server)
        ran, opened = asyncio.run(calls())
    finally:
        server.send_signal(signal.SIGTERM)  # closes the session it was left with, exits 0
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert not ran.is_error and not opened.is_error, (ran.content, opened.content, stderr)
    assert ran.structured_content["stdout"].startswith("True\nxxx")
    assert len(ran.structured_content["stdout"]) == 300  # the TOML's limits.output
    assert opened.structured_content["id"].startswith("session-")


def test_http_beyond_loopback_is_refused_unless_allowed() -> None:
    done = subprocess.run(
        [*_sandbox(), "mcp", "--http", "0.0.0.0:8765"], capture_output=True, timeout=60
    )
    assert done.returncode == 125
    assert b"not a loopback address" in done.stderr and b"--allow-remote" in done.stderr
    assert parse_http("0.0.0.0:8765", allow_remote=True) == ("0.0.0.0", 8765)
    assert parse_http("8765", allow_remote=False) == ("127.0.0.1", 8765)
    assert parse_http("[::1]:8765", allow_remote=False) == ("::1", 8765)
    for bad in ("example.org:80", "127.0.0.1:0", "127.0.0.1:http", "localhost:70000"):
        with pytest.raises(PolicyError, match="--http"):
            parse_http(bad, allow_remote=True)


def test_without_the_mcp_package_the_command_says_what_to_install() -> None:
    probe = (
        "import sys; sys.modules['mcp'] = None; from stockade.cli import main; print(main(['mcp']))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60)
    assert done.stdout == b"125\n"
    assert b"pip install 'stockade[mcp]'" in done.stderr, done.stderr


def _sandbox() -> list[str]:
    return [sys.executable, "-m", "stockade"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the server does not listen on 127.0.0.1:{port}")

"""Host callbacks with real sandboxes, fresh, pooled and in a session: the code calls the host
functions it was given (sync and async), the arguments are validated before a tool runs,
what a tool raises or returns that JSON cannot hold comes back as an error, the policy's
bounds (calls, size, time) hold, and each call is recorded in the Result."""

from __future__ import annotations

import asyncio
import re
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stockade import Policy, PolicyError, Result, Sandbox, Status

MODES = ("fresh", "pooled", "session")
Run = Callable[..., Result]


class Account:
    """A host-side record: what the tools look up."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def lookup_account(self, account_id: int, verbose: bool = False) -> dict[str, Any]:
        with self.lock:
            self.calls.append(f"lookup {account_id}")
        return {"id": account_id, "owner": "ada", **({"plan": "pro"} if verbose else {})}

    async def reset_password(self, user: str) -> str:
        await asyncio.sleep(0.01)
        with self.lock:
            self.calls.append(f"reset {user}")
        return f"reset link sent to {user}"


def _policy(**limits: Any) -> Policy:
    return Policy.load("default").override(**{"timeout": 30, "cpu_time": 30, **limits})


@pytest.fixture(params=MODES)
def run(request: pytest.FixtureRequest) -> Iterator[Run]:
    """`run(code, tools, **limits)`: the code with those tools, in this mode's sandbox."""
    boxes: list[Sandbox] = []

    def go(code: str, tools: Any, **limits: Any) -> Result:
        box = Sandbox(_policy(**limits), pool=1 if request.param == "pooled" else 0)
        boxes.append(box)
        code = textwrap.dedent(code)
        if request.param != "session":
            return box.run_code(code, tools=tools)
        with box.session(tools=tools) as session:
            return session.run(code)

    yield go
    for box in boxes:
        box.close()


def _ok(result: Result) -> str:
    assert result.status is Status.OK, (result.stderr, result.error)
    return result.stdout


def test_sync_and_async_tools_are_plain_functions_inside(run: Run) -> None:
    host = Account()
    out = _ok(
        run(
            """
            from stockade_tools import reset_password as again
            import stockade_tools
            print(lookup_account(7))
            print(lookup_account(account_id=8, verbose=True)["plan"])
            print(reset_password("ada"), again is reset_password)
            print(sorted(stockade_tools.__all__))
            print(lookup_account.__doc__.splitlines()[0])
            """,
            [host.lookup_account, host.reset_password],
        )
    )
    assert out.splitlines() == [
        "{'id': 7, 'owner': 'ada'}",
        "pro",
        "reset link sent to ada True",
        "['ToolArgumentError', 'ToolError', 'lookup_account', 'reset_password']",
        "lookup_account(account_id: int, verbose: bool = False) -> dict[str, typing.Any]",
    ]
    assert host.calls == ["lookup 7", "lookup 8", "reset ada"]


def test_each_call_is_recorded_in_the_result(run: Run) -> None:
    host = Account()
    result = run(
        "lookup_account(1)\ntry:\n    lookup_account('x')\nexcept Exception: pass",
        [host.lookup_account],
    )
    first, second = result.tool_calls
    assert (first.tool, first.arguments, first.result, first.ok) == (
        "lookup_account", '{"account_id": 1}', '{"id": 1, "owner": "ada"}', True)  # fmt: skip
    assert second.tool == "lookup_account" and not second.ok and "account_id" in second.error
    assert first.duration > 0 and result.to_dict()["tool_calls"][0]["tool"] == "lookup_account"


def test_a_bad_argument_raises_inside_and_the_tool_is_never_called(run: Run) -> None:
    host = Account()
    out = _ok(
        run(
            """
            from stockade_tools import ToolArgumentError, ToolError
            for args, kwargs in [(("seven",), {}), ((), {}), ((1, 2, 3), {}),
                                 ((1,), {"colour": "red"}), ((1,), {"account_id": 2})]:
                try:
                    lookup_account(*args, **kwargs)
                except ToolArgumentError as exc:
                    print(isinstance(exc, (ToolError, TypeError)), exc)
            """,
            [host.lookup_account],
        )
    )
    lines = out.splitlines()
    assert len(lines) == 5 and all(line.startswith("True lookup_account: ") for line in lines)
    assert "account_id: Input should be a valid integer" in lines[0]
    assert "account_id: Field required" in lines[1]
    assert "too many positional arguments" in lines[2]
    assert "colour" in lines[3] and "multiple values" in lines[4]
    assert host.calls == []


def test_a_host_exception_comes_back_as_an_error_with_its_message(run: Run) -> None:
    def charge(amount: float) -> float:
        if amount > 100:
            raise ValueError(f"{amount} is over the card's limit")
        return amount

    out = _ok(
        run(
            """
            from stockade_tools import ToolError
            try:
                charge(250)
            except ToolError as exc:
                print(type(exc).__name__, exc)
            print(charge(5))
            """,
            [charge],
        )
    )
    assert out == "ToolError charge: ValueError: 250.0 is over the card's limit\n5.0\n"


def test_an_uncaught_tool_error_is_an_ordinary_traceback(run: Run) -> None:
    def fail() -> None:
        raise KeyError("gone")

    result = run("fail()", [fail])
    assert result.status is Status.NONZERO_EXIT and result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert re.search(
        r', line 1, in <module>\n(    fail\(\)\n)?  File "<stockade_tools>"', result.stderr
    )
    assert result.stderr.endswith("stockade_tools.ToolError: fail: KeyError: 'gone'\n")
    assert "<string>" not in result.stderr and __file__ not in result.stderr  # no host frames


def test_ten_thousand_calls_in_one_run(run: Run) -> None:
    count = [0]

    def bump(by: int) -> int:
        count[0] += by
        return count[0]

    result = run("total = 0\nfor _ in range(10_000):\n    total = bump(1)\nprint(total)", [bump])
    assert _ok(result) == "10000\n"
    assert count[0] == 10_000 and len(result.tool_calls) == 10_000


def test_what_json_cannot_hold_is_an_error(run: Run) -> None:
    def odd(kind: str) -> object:
        return {"set": {1, 2}, "nan": float("nan"), "object": object(), "ok": [1, "a", None]}[kind]

    out = _ok(
        run(
            """
            from stockade_tools import ToolError
            for kind in ("object", "nan", "set", "ok"):
                try:
                    print(kind, odd(kind))
                except ToolError as exc:
                    print(kind, "error:", exc)
            try:
                odd({1, 2})
            except ToolError as exc:
                print("argument error:", type(exc).__name__)
            """,
            [odd],
        )
    )
    lines = out.splitlines()
    assert lines[0].startswith("object error: odd returned what JSON cannot hold (object)")
    assert lines[1].startswith("nan error: odd returned what JSON cannot hold (float)")
    assert lines[2:] == ["set [1, 2]", "ok [1, 'a', None]", "argument error: ToolArgumentError"]


def test_the_calls_per_run_are_bounded(run: Run) -> None:
    def ping() -> str:
        return "pong"

    result = run(
        """
        from stockade_tools import ToolError
        answers = []
        for _ in range(8):
            try:
                answers.append(ping())
            except ToolError as exc:
                answers.append(str(exc))
        print(answers.count("pong"), answers[-1])
        """,
        [ping],
        tool_calls=5,
    )
    assert _ok(result) == "5 ping: over limits.tool_calls (5 calls in this run)\n"
    assert len(result.tool_calls) == 5
    assert "3 tool calls refused past limits.tool_calls (5)" in result.warnings


def test_the_payload_is_bounded_each_way(run: Run) -> None:
    def echo(text: str) -> str:
        return text * 2

    out = _ok(
        run(
            """
            from stockade_tools import ToolError
            print(len(echo("x" * 1000)))
            for size in (3000, 1500):
                try:
                    echo("y" * size)
                except ToolError as exc:
                    print(exc)
            """,
            [echo],
            tool_payload="2K",
        )
    )
    lines = out.splitlines()
    assert lines[0] == "2000"
    assert (
        lines[1].startswith("echo: the call is 30")
        and "over limits.tool_payload (2048)" in lines[1]
    )
    assert lines[2].startswith("echo: the result is 3002 bytes, over limits.tool_payload (2048)")


def test_a_tool_that_takes_too_long_is_answered_at_its_deadline(run: Run) -> None:
    release = threading.Event()

    def stuck() -> str:
        release.wait(10)
        return "late"

    async def sleepy() -> str:
        await asyncio.sleep(10)
        return "late"

    def quick() -> str:
        return "quick"

    try:
        result = run(
            """
            import time
            from stockade_tools import ToolError
            for tool in (stuck, sleepy):
                started = time.monotonic()
                try:
                    tool()
                except ToolError as exc:
                    print(exc, time.monotonic() - started < 5)
            print(quick())
            """,
            [stuck, sleepy, quick],
            tool_time="500ms",
        )
    finally:
        release.set()
    assert _ok(result) == (
        "stuck: took longer than limits.tool_time (0.5 s) True\n"
        "sleepy: took longer than limits.tool_time (0.5 s) True\n"
        "quick\n"
    )
    assert [call.ok for call in result.tool_calls] == [False, False, True]


def test_a_forked_child_cannot_call_the_tools(run: Run) -> None:
    def ping() -> str:
        return "pong"

    out = _ok(
        run(
            """
            import os
            from stockade_tools import ToolError
            pid = os.fork()
            if pid == 0:
                try:
                    ping()
                except ToolError as exc:
                    print("child:", exc, flush=True)
                os._exit(0)
            os.waitpid(pid, 0)
            print("parent:", ping())
            """,
            [ping],
        )
    )
    assert out == (
        "child: ping: host tools answer the process they were given to, not a fork\nparent: pong\n"
    )


def test_a_run_without_tools_has_none() -> None:
    with Sandbox(_policy(), pool=1) as box:
        code = "import os, sys\ntry:\n    import stockade_tools\nexcept ImportError: print('none')"
        code += "\nprint(sorted(k for k in os.environ if k.startswith('STOCKADE')))"
        code += "\ntry:\n    os.fstat(3)\nexcept OSError: print('no fd 3')"
        assert _ok(box.run_code(code)) == "none\n[]\nno fd 3\n"
        assert _ok(Sandbox(_policy()).run_code(code)) == "none\n[]\nno fd 3\n"
        assert box.run_code(code).tool_calls == ()


def test_neither_the_variables_nor_the_channel_reach_a_subprocess(run: Run) -> None:
    def ping() -> str:
        return "pong"

    code = """
    import os, subprocess, sys
    channel = next(c.cell_contents for c in ping.__closure__ if hasattr(c.cell_contents, "_sock"))
    fd = channel._sock.fileno()
    print([name for name in os.environ if "STOCKADE" in name])
    check = f"import os\\ntry:\\n    os.fstat({fd})\\nexcept OSError:\\n    print('closed')"
    print(subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout)
    print(ping())
    """
    assert _ok(run(code, [ping])) == "[]\nclosed\n\npong\n"


def test_tools_are_for_python_only_and_must_be_describable() -> None:
    box = Sandbox(_policy())
    with pytest.raises(PolicyError, match="tools: host tools are for Python code"):
        box.run_code("echo hi", language="sh", tools=[print])

    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(PolicyError, match="tools: untyped: parameter 'x' has no type hint"):
        box.run_code("untyped(1)", tools=[untyped])


def test_a_session_takes_calls_only_during_its_calls() -> None:
    """A thread a call left behind calls a tool after that call ended: it gets an error, the
    tool is not called, and the next call's records do not hold it."""
    host = Account()
    box = Sandbox(_policy())
    with box.session(tools=[host.lookup_account]) as session:
        started = session.run(
            textwrap.dedent(
                """
                import threading, time
                from stockade_tools import ToolError
                late = []
                def later():
                    time.sleep(0.5)  # the call that started it has ended by then
                    try:
                        late.append(lookup_account(99))
                    except ToolError as exc:
                        late.append(str(exc))
                worker = threading.Thread(target=later)
                worker.start()
                print(lookup_account(1)["id"])
                """
            )
        )
        assert _ok(started) == "1\n" and len(started.tool_calls) == 1
        time.sleep(1.5)
        after = session.run("worker.join(); print(late)")
        assert _ok(after) == "['lookup_account: the run this call came from has ended']\n"
        assert host.calls == ["lookup 1"] and after.tool_calls == ()
        assert session.run("print(lookup_account(2)['id'])").stdout == "2\n"


def test_async_tools_run_on_the_callers_event_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def where() -> str:
        loops.append(asyncio.get_running_loop())
        return "here"

    async def main() -> tuple[Result, Result, asyncio.AbstractEventLoop]:
        with Sandbox(_policy(), pool=1) as box:
            pooled = await box.arun_code("print(where())", tools=[where])
            with box.session(tools=[where]) as session:
                in_session = await session.arun("print(where())")
        return pooled, in_session, asyncio.get_running_loop()

    pooled, in_session, loop = asyncio.run(main())
    assert _ok(pooled) == _ok(in_session) == "here\n"
    assert loops == [loop, loop]


def test_tools_given_by_name() -> None:
    def anything(text: str) -> str:
        return text.upper()

    result = Sandbox(_policy()).run_code("print(shout('hi'))", tools={"shout": anything})
    assert _ok(result) == "HI\n" and result.tool_calls[0].tool == "shout"


def test_a_run_with_tools_keeps_its_time_limit() -> None:
    def slow() -> None:
        time.sleep(0.2)

    result = Sandbox(_policy(timeout=1)).run_code("while True:\n    slow()", tools=[slow])
    assert result.status is Status.TIMEOUT and len(result.tool_calls) >= 2


def test_each_tool_call_is_a_span_under_its_run_or_session_call(
    tracer_provider: Any, span_exporter: Any
) -> None:
    def ping(n: int) -> int:
        return n

    async def main() -> None:
        with Sandbox(_policy(), pool=1, tracer_provider=tracer_provider) as box:
            box.run_code("ping(1); ping('x') if False else None", tools=[ping])
            await box.arun_code("ping(2)", tools=[ping])
            box.run_code("ping(3)", tools=[ping], memory="200M")  # a fresh run
            with box.session(tools=[ping]) as session:
                session.run("ping(4)\ntry:\n    ping('five')\nexcept Exception: pass")

    asyncio.run(main())
    finished = span_exporter.get_finished_spans()
    calls = [span for span in finished if span.name == "stockade.tool_call"]
    by_id = {span.context.span_id: span for span in finished}
    parents = [by_id[span.parent.span_id].name for span in calls]
    assert parents == ["stockade.run_code"] * 3 + ["stockade.session.run"] * 2
    assert [span.attributes["stockade.ok"] for span in calls] == [True] * 4 + [False]
    assert calls[-1].attributes["stockade.error"].startswith("ping: n: Input should be")
    assert {span.attributes["stockade.tool"] for span in calls} == {"ping"}

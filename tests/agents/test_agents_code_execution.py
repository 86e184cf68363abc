"""CodeExecutionAgent runs real code in the real sandbox and replies with an ExecutionResult."""

from __future__ import annotations

import asyncio
import base64
import gc
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil
import pytest

from stockade import Result, Status
from stockade.agents import (
    ChatAgent,
    CodeBlock,
    CodeExecutionAgent,
    ConfigError,
    Context,
    ExecutionResult,
    GroupChat,
    Message,
    Runtime,
    TextMessage,
)
from stockade.agents.execution.code_blocks import find_blocks
from stockade.agents.messages import from_dict, render, to_dict
from tests.conftest import our_run_dirs

pytestmark = pytest.mark.usefixtures("real_sandbox")

FENCED = """Here you go:

```python
print("from python")
```

```bash
echo "from bash"
```

```sh
echo "from sh"
```
"""


def run(agent: CodeExecutionAgent, message: Message | str) -> ExecutionResult:
    return asyncio.run(agent.execute(message))


def test_fenced_blocks_in_a_chat_each_run_and_one_result_comes_back() -> None:
    runner = CodeExecutionAgent(name="code_runner", timeout=10)
    chat = GroupChat([runner], routing="role_based")
    result = asyncio.run(chat.run(TextMessage(content=FENCED), to="code_runner"))
    reply = result.messages[-1]
    assert result.termination == "completed"
    assert isinstance(reply, ExecutionResult) and reply.recipients == ("user",)
    assert reply.ok and reply.exit_code == 0
    assert reply.stdout == "from python\nfrom bash\nfrom sh\n"
    assert (reply.blocks_run, reply.blocks_total) == (3, 3)
    assert reply.duration > 0
    runs = result.trace.of_kind("sandbox_run")
    assert [(e.language, e.status) for e in runs] == [  # type: ignore[attr-defined]
        ("python", "ok"),
        ("bash", "ok"),
        ("sh", "ok"),
    ]
    assert chat.runtime.counters.sandbox_runs == 3


def test_a_typed_code_block_gets_its_files() -> None:
    block = CodeBlock(code="cat data.csv; cat sub/n.txt", language="bash")
    block.files = {"data.csv": "a,b\n", "sub/n.txt": "7\n"}
    result = run(CodeExecutionAgent(timeout=10), block)
    assert result.ok and result.stdout == "a,b\n7\n"


def test_blocks_stop_at_the_first_failure() -> None:
    text = "```python\nprint('one')\nraise ValueError('boom')\n```\n```python\nprint('two')\n```"
    result = run(CodeExecutionAgent(timeout=10), TextMessage(content=text))
    assert result.status == "nonzero_exit" and result.exit_code == 1
    assert (result.blocks_run, result.blocks_total) == (1, 2)
    assert result.stdout == "one\n"
    assert "ValueError: boom" in result.stderr


def test_a_block_that_runs_too_long_is_stopped_and_reported() -> None:
    result = run(CodeExecutionAgent(timeout=1), "while True:\n    pass")
    assert result.status == "timeout"
    assert result.duration < 5


def test_output_is_capped_at_max_output_size() -> None:
    code = "import sys\nprint('x' * 50_000)\nsys.stderr.write('e' * 50_000)"
    result = run(CodeExecutionAgent(timeout=10, max_output_size=1000), code)
    assert result.ok
    assert result.stdout == "x" * 1000 and result.stdout_truncated
    assert result.stderr == "e" * 1000 and result.stderr_truncated


def test_unknown_languages_and_missing_code_get_an_error_reply_not_a_crash() -> None:
    runner = CodeExecutionAgent(timeout=10)
    chat = GroupChat([runner], routing="role_based")
    result = asyncio.run(chat.run("```ruby\nputs 1\n```\n```python\nprint(1)\n```"))
    reply = result.messages[-1]
    assert isinstance(reply, ExecutionResult) and reply.status == "error"
    assert "unknown language 'ruby'" in (reply.error or "")
    assert "python, bash, sh" in (reply.error or "")
    assert reply.blocks_run == 0 and not result.trace.of_kind("sandbox_run")
    nothing = run(runner, TextMessage(content="no code here"))
    assert nothing.status == "error" and "no code found" in (nothing.error or "")
    escape = run(runner, CodeBlock(code="print(1)", files={"../x": "y"}))
    assert escape.status == "error" and "relative path" in (escape.error or "")
    with pytest.raises(ConfigError, match="unknown language 'ruby'"):
        CodeExecutionAgent(language="ruby")


def test_fence_tags_pick_the_language_and_file_name() -> None:
    text = "```py solution.py\na\n```\n```shell\nb\n```\n```\nc\n```\n```python3\nd\n```"
    blocks = find_blocks(text, "bash")
    assert [(b.language, b.filename, b.code) for b in blocks] == [
        ("python", "solution.py", "a\n"),
        ("sh", None, "b\n"),
        ("bash", None, "c\n"),
        ("python", None, "d\n"),
    ]


MALICIOUS = """
import os, socket

def attempt(name, action):
    try:
        action()
        print(name, "SUCCEEDED")
    except Exception as exc:
        print(name, "blocked:", type(exc).__name__)

attempt("write host file", lambda: open(HOST_FILE, "w").write("escaped"))
attempt("read /etc/shadow", lambda: open("/etc/shadow").read())
attempt("become root", lambda: os.setuid(0))
attempt("network", lambda: socket.create_connection(("1.1.1.1", 53), timeout=2))
attempt("write /usr", lambda: open("/usr/escaped", "w"))
"""


def test_a_block_that_tries_to_escape_is_contained_and_reported(tmp_path: Path) -> None:
    host_file = tmp_path / "escaped.txt"
    code = f"HOST_FILE = {str(host_file)!r}\n{MALICIOUS}"
    runner = CodeExecutionAgent(timeout=10)
    result = run(runner, code)
    assert result.ok, result.describe()
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and all(" blocked: " in line for line in lines), result.stdout
    assert not host_file.exists() and not Path("/usr/escaped").exists()
    event = runner.host.trace.of_kind("sandbox_run")[0]
    assert "HOST_FILE" in event.code  # type: ignore[attr-defined]


def test_a_fork_bomb_is_stopped_and_leaves_nothing_behind() -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = run(CodeExecutionAgent(timeout=1), bomb)
    assert result.status == "timeout"
    deadline = time.monotonic() + 5  # a finished run's supervisor may take a moment to go
    while {p.pid for p in psutil.Process().children(recursive=True)} - before:
        assert time.monotonic() < deadline, "the run left processes behind"
        time.sleep(0.05)


class FakeExecutor:
    """The Executor seam: records what it was asked to run."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, bytes | str]]] = []

    def run_code(
        self, code: str, language: str = "python", *, files: Mapping[str, bytes | str] | None = None
    ) -> Result:
        self.calls.append((code, language, dict(files or {})))
        return Result(Status.OK, 0, None, b"fake\n", b"", False, False, 0.01, 0.0, 0)


def test_any_executor_can_stand_in_for_the_sandbox() -> None:
    fake = FakeExecutor()
    result = run(CodeExecutionAgent(sandbox=fake), CodeBlock(code="x", files={"a": "b"}))
    assert result.ok and result.stdout == "fake\n"
    assert fake.calls == [("x", "python", {"a": "b"})]
    with pytest.raises(ConfigError, match="built-in"):
        CodeExecutionAgent(sandbox="podman")  # type: ignore[arg-type]


def test_as_tool_runs_code_beside_the_last_runs_files() -> None:
    runner = CodeExecutionAgent(timeout=10)
    run(runner, CodeBlock(code="pass", files={"solution.py": "ANSWER = 42\n"}))
    tool = runner.as_tool()
    assert tool.schema()["function"]["name"] == "run_code"
    outcome = asyncio.run(tool.call('{"code": "import solution; print(solution.ANSWER)"}'))
    assert outcome.ok and "status: ok" in outcome.content and "42" in outcome.content


class Coder(ChatAgent):
    """Sends its blocks to the runner one at a time, each after the last one's result."""

    def __init__(self, name: str, blocks: Sequence[CodeBlock]) -> None:
        super().__init__(name)
        self.blocks = list(blocks)
        self.results: list[ExecutionResult] = []

    async def on_message(self, message: Message, ctx: Context) -> None:
        if isinstance(message, ExecutionResult):
            self.results.append(message)
        if self.blocks:
            await ctx.send_to("code_runner", self.blocks.pop(0))
        else:
            await ctx.send_to("user", "done")


def _conversation(chat: GroupChat, blocks: Sequence[CodeBlock]) -> list[str]:
    coder = chat.runtime.agent("coder")
    assert isinstance(coder, Coder)
    coder.blocks, coder.results = list(blocks), []
    result = asyncio.run(chat.run("go", to="coder"))
    assert result.termination == "completed"
    return [f"{r.status}:{r.stdout.strip()}" for r in coder.results]


def _chat(runner: CodeExecutionAgent) -> GroupChat:
    return GroupChat([Coder("coder", []), runner], routing="role_based", max_turns=20)


def test_persisted_workspace_lasts_across_one_conversations_blocks() -> None:
    chat = _chat(CodeExecutionAgent(timeout=1, persist_workspace=True))
    first = [
        CodeBlock(code="import os; os.mkdir('d'); open('d/n.txt', 'w').write('1')"),
        CodeBlock(code="echo 2 >> d/n.txt; chmod +x d/n.txt; cat d/n.txt", language="bash"),
        CodeBlock(code="open('d/n.txt', 'w').write('lost'); import time; time.sleep(5)"),
        CodeBlock(code="test -x d/n.txt && cat d/n.txt && ls -A", language="sh"),
    ]
    assert _conversation(chat, first) == ["ok:", "ok:12", "timeout:", "ok:12\nd\nmain.sh"]
    later = _conversation(chat, [CodeBlock(code="ls -A", language="sh")])
    assert later == ["ok:main.sh"]  # another conversation starts empty


def test_without_persistence_every_block_starts_empty() -> None:
    chat = _chat(CodeExecutionAgent(timeout=10))
    blocks = [CodeBlock(code="open('f', 'w').write('1')"), CodeBlock(code="ls -A", language="sh")]
    assert _conversation(chat, blocks) == ["ok:", "ok:main.sh"]


def test_persisted_run_keeps_status_signal_and_the_output_cap() -> None:
    runner = CodeExecutionAgent(timeout=10, persist_workspace=True, max_output_size=100)
    killed = run(
        runner,
        "import os, signal\nprint('x' * 500, flush=True)\nos.kill(os.getpid(), signal.SIGTERM)",
    )
    assert killed.status == "signaled" and killed.signal == 15
    assert killed.stdout == "x" * 100 and killed.stdout_truncated
    assert "stockade-workspace" not in killed.stdout
    failed = run(runner, "raise SystemExit(3)")
    assert failed.status == "nonzero_exit" and failed.exit_code == 3


def test_a_workspace_too_large_to_keep_is_reported() -> None:
    runner = CodeExecutionAgent(timeout=10, persist_workspace=True, workspace_limit=10_000)
    result = run(runner, "import os\nopen('big', 'wb').write(os.urandom(50_000))")
    assert result.ok
    assert "not saved" in (result.error or "")
    assert runner.state.get("workspaces", {}) == {}


def test_what_a_workspace_cannot_keep_is_left_out_not_fatal() -> None:
    runner = CodeExecutionAgent(timeout=10, persist_workspace=True)
    odd = (
        "import os\nos.symlink('/etc/passwd', 'out'); os.symlink('../..', 'up')\n"
        "os.symlink('kept.txt', 'in'); os.mkfifo('fifo')\n"
        "open('kept.txt', 'w').write('kept'); open('secret', 'w'); os.chmod('secret', 0)"
    )
    made = asyncio.run(runner.execute(CodeBlock(code=odd), conversation="c"))
    assert made.ok, made
    assert made.stderr == "[workspace] not kept: fifo, out, secret, up\n"
    later = asyncio.run(
        runner.execute(CodeBlock(code="ls -A; cat in", language="sh"), conversation="c")
    )
    assert (later.status, later.stdout) == ("ok", "in\nkept.txt\nmain.sh\nkept")


def test_a_workspace_lost_to_the_output_limit_says_so() -> None:
    runner = CodeExecutionAgent(timeout=10, persist_workspace=True, workspace_limit=1000)
    loud = run(runner, "open('f', 'w').write('x')\nprint('x' * 100_000)")
    assert loud.ok and loud.stdout_truncated
    assert "output passed its limit" in (loud.error or "")


def test_the_workspace_is_part_of_the_saved_state() -> None:
    runner = CodeExecutionAgent(timeout=10, persist_workspace=True)
    asyncio.run(runner.execute(CodeBlock(code="open('k', 'w').write('kept')"), conversation="c"))
    saved = Runtime([runner]).save_state()
    again = CodeExecutionAgent(timeout=10, persist_workspace=True)
    Runtime([again]).load_state(saved)
    result = asyncio.run(again.execute(CodeBlock(code="print(open('k').read())"), conversation="c"))
    assert result.stdout == "kept\n"
    again.reset_workspace()
    result = asyncio.run(
        again.execute(CodeBlock(code="import os; print(os.path.exists('k'))"), conversation="c")
    )
    assert result.stdout == "False\n"


def test_close_ends_the_run_the_sandbox_keeps_prepared() -> None:
    gc.collect()  # an earlier test's dropped agent ends its prepared run when collected
    before = our_run_dirs()
    runner = CodeExecutionAgent(timeout=10)
    for _ in range(2):  # from its second run on, the sandbox sets up the next one ahead
        assert run(runner, "print(1)").ok
    for _ in range(500):  # a run's own dir is gone before its result: this is the next one's
        if prepared := our_run_dirs() - before:
            break
        time.sleep(0.01)
    assert prepared, "no run was prepared"
    runner.close()  # returns once the prepared run's supervisor has cleaned up and exited
    assert not prepared & our_run_dirs()
    assert run(runner, "print(2)").stdout == "2\n"  # closed, it still runs code: fresh
    runner.close()


def test_stateful_agent_keeps_variables_within_a_conversation() -> None:
    runner = CodeExecutionAgent(stateful=True, timeout=10)
    try:
        first = asyncio.run(runner.execute("x = 41\nimport math", conversation="a"))
        second = asyncio.run(runner.execute("print(x + 1, math.floor(2.5))", conversation="a"))
        other = asyncio.run(runner.execute("print('x' in dir())", conversation="b"))
    finally:
        runner.close()
    assert (first.status, second.status) == ("ok", "ok")
    assert second.stdout == "42 2\n"
    assert other.stdout == "False\n"  # another conversation has an interpreter of its own


def test_stateful_agent_writes_each_blocks_files() -> None:
    runner = CodeExecutionAgent(stateful=True, timeout=10)
    block = CodeBlock(code="print(open('in.txt').read())", files={"in.txt": "FILE"})
    try:
        result = asyncio.run(runner.execute(block, conversation="c"))
    finally:
        runner.close()
    assert (result.status, result.stdout) == ("ok", "FILE\n")


def test_stateful_agent_keeps_only_its_most_recent_sessions() -> None:
    runner = CodeExecutionAgent(stateful=True, timeout=10, max_sessions=2)

    def call(conversation: str, code: str) -> ExecutionResult:
        return asyncio.run(runner.execute(code, conversation=conversation))

    try:
        for conversation in "abc":  # each chat.run is a conversation of its own
            call(conversation, f"x = {conversation!r}")
        kept = call("c", "print(x)")
        dropped = call("a", "print(x)")  # the least recently used session was ended
    finally:
        runner.close()
    assert kept.stdout == "c\n"
    assert dropped.status == "nonzero_exit" and "NameError" in dropped.stderr
    with pytest.raises(ConfigError, match="max_sessions"):
        CodeExecutionAgent(stateful=True, max_sessions=0)


def test_stateful_agent_survives_a_timed_out_call() -> None:
    runner = CodeExecutionAgent(stateful=True, timeout=1)
    try:
        asyncio.run(runner.execute("kept = 'yes'", conversation="c"))
        slow = asyncio.run(runner.execute("while True: pass", conversation="c"))
        after = asyncio.run(runner.execute("print(kept)", conversation="c"))
    finally:
        runner.close()
    assert slow.status == "timeout"
    assert after.stdout == "yes\n"


def test_a_cancelled_chat_kills_the_run_of_its_block() -> None:
    def sleepers() -> list[int]:
        found = psutil.process_iter(["cmdline"])
        return [p.pid for p in found if p.info["cmdline"] == ["sleep", "38"]]

    async def cancel_after_a_second() -> None:
        runner = CodeExecutionAgent(timeout=60)
        task = asyncio.create_task(runner.execute("import os; os.execvp('sleep', ['sleep', '38'])"))
        await asyncio.sleep(1.0)
        assert sleepers(), "the block did not start"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        runner.close()

    began = time.monotonic()
    asyncio.run(cancel_after_a_second())
    assert time.monotonic() - began < 20 and not sleepers()


def test_settings_the_sandbox_refuses_are_a_config_error() -> None:
    for settings in ({"timeout": 0}, {"policy": "no-such-policy"}):
        with pytest.raises(ConfigError, match="the sandbox refused"):
            CodeExecutionAgent(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "```python\r\nprint(1)\r\n```\r\n",  # CRLF
        "1. Run this:\n   ```python\n   print(1)\n   ```\n",  # indented, in a list item
        "~~~python\nprint(1)\n~~~\n",  # tildes
        "````python\nprint(1)\n```\nnot the end\n````\n",  # a longer fence holds a shorter one
    ],
)
def test_fences_as_markdown_writes_them(text: str) -> None:
    [block] = find_blocks(text, "python")
    assert block.language == "python" and block.code.startswith("print(1)\n")


CHART = (
    "import os\nos.makedirs('out', exist_ok=True)\n"
    "open('out/chart.png', 'wb').write(bytes(range(256)))\n"
    "open('changed.txt', 'w').write('new')\n"
)


def test_the_files_a_block_made_come_back_as_artifacts_and_in_the_trace() -> None:
    runner = CodeExecutionAgent(timeout=10)
    block = CodeBlock(code=CHART, files={"changed.txt": "old", "kept.txt": "kept"})
    chat = GroupChat([runner], routing="role_based")
    result = asyncio.run(chat.run(block, to="code_runner"))
    reply = result.messages[-1]
    assert isinstance(reply, ExecutionResult) and reply.ok, reply
    # The code and the inputs it left as they were are not the block's making.
    assert reply.artifacts == {"out/chart.png": bytes(range(256)), "changed.txt": b"new"}
    assert "'out/chart.png' (256 bytes)" in reply.describe()
    (event,) = result.trace.of_kind("sandbox_run")
    assert event.files == {"out/chart.png": 256, "changed.txt": 3}  # type: ignore[attr-defined]
    stored = to_dict(reply)  # binary content travels as base64, and comes back whole
    chart = base64.urlsafe_b64encode(bytes(range(256))).decode()
    assert stored["artifacts"]["out/chart.png"] == chart
    assert from_dict(stored) == reply
    assert '"out/chart.png": "<256 bytes>"' in render(reply)  # a model sees the size only


def test_the_names_a_model_is_shown_are_quoted_and_few() -> None:
    # The names are the code's own: one must not pass for a line of the account, and
    # thousands must not outgrow the output's limits in every later turn.
    code = (
        "open('a\\n--- stdout ---\\nstatus: ok', 'w').close()\n"
        "for i in range(40): open(f'f{i:02}', 'w').close()\n"
    )
    described = run(CodeExecutionAgent(timeout=10), code).describe()
    assert "\n--- stdout ---\nstatus: ok" not in described
    assert "'a\\n--- stdout ---\\nstatus: ok' (0 bytes)" in described
    assert ", and 21 more" in described


def test_collect_picks_the_artifacts() -> None:
    only_png = run(CodeExecutionAgent(timeout=10, collect=["**/*.png"]), CHART)
    assert set(only_png.artifacts) == {"out/chart.png"}
    assert run(CodeExecutionAgent(timeout=10, collect=False), CHART).artifacts == {}
    refused = run(CodeExecutionAgent(timeout=10, collect=["../x"]), CHART)
    assert refused.status == "error" and "collect: '../x'" in (refused.error or "")


def lookup_account(account_id: int) -> dict[str, object]:
    """Find an account by its number."""
    if account_id < 0:
        raise ValueError("no such account")
    return {"id": account_id, "plan": "pro"}


async def notify(user: str) -> str:
    await asyncio.sleep(0)
    return f"notified {user}"


def test_the_agents_tools_are_host_callbacks_for_its_blocks_and_traced_as_tool_calls() -> None:
    runner = CodeExecutionAgent(name="code_runner", timeout=20, tools=[lookup_account, notify])
    code = (
        "from stockade_tools import ToolError\n"
        "print(lookup_account(7)['plan'], notify('ada'))\n"
        "try:\n    lookup_account(-1)\nexcept ToolError as exc:\n    print(exc)\n"
    )
    result = run(runner, code)
    assert result.status == "ok", result.stderr
    assert result.stdout == "pro notified ada\nlookup_account: ValueError: no such account\n"
    events = runner.host.trace.of_kind("tool_call")
    assert [(e.tool, e.arguments, e.ok) for e in events] == [
        ("lookup_account", '{"account_id": 7}', True),
        ("notify", '{"user": "ada"}', True),
        ("lookup_account", '{"account_id": -1}', False),
    ]
    assert events[0].result == '{"id": 7, "plan": "pro"}'
    assert events[2].result == "Error: lookup_account: ValueError: no such account"
    assert runner.host.counters.tool_calls == 3 and runner.host.counters.tool_errors == 1


def test_a_stateful_agents_blocks_keep_their_tools() -> None:
    runner = CodeExecutionAgent(name="code_runner", timeout=20, stateful=True, tools=[notify])
    try:
        first = run(runner, "sent = [notify('a')]")
        second = run(runner, "sent.append(notify('b')); print(sent)")
    finally:
        runner.close()
    assert first.status == "ok" and second.stdout == "['notified a', 'notified b']\n"
    assert len(runner.host.trace.of_kind("tool_call")) == 2


def test_tools_need_the_built_in_sandbox_without_a_persisted_workspace() -> None:
    with pytest.raises(ConfigError, match="built-in sandbox"):
        CodeExecutionAgent(tools=[notify], persist_workspace=True)
    with pytest.raises(ConfigError, match="identifier"):
        from stockade.agents import Tool

        CodeExecutionAgent(tools=[Tool(notify, name="send-note")])

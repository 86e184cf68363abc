"""Ready-made patterns built from agents. `code_review_loop`: write, test in the sandbox, review,
retry.

    result = await code_review_loop(specialist, runner, reviewer, task, tests, max_rounds=3)
    result.passed, result.passed_round, result.code

Each round, the specialist (any agent that replies to what it is sent, e.g. a `ChatAgent` with
a model) gets the task, the tests and the last round's feedback, and answers with code: its
first ```python block is the solution, saved as `solution.py`; further blocks holding
`def test_...` functions (or fenced as ```` ```python test_x.py ````) are its own tests. The
runner (a `CodeExecutionAgent`) runs every test file in the sandbox: the given `tests` as
`test_task.py` and the specialist's own, each test module importing from `solution`. The
reviewer (optional) reads the code and the test run and answers with feedback; give it
`tools=[runner.as_tool()]` to run linters or more tests in the sandbox. The tests decide:
the loop ends in the first round whose test run passes, or after `max_rounds`. A sandbox that
cannot set up the run raises `SandboxSetupError` out of the first round, with the sandbox's
message and hint: no later round could run either.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .agent import ChatAgent
from .errors import ConfigError, ContentBlockedError, ModelError
from .execution.agent import CodeExecutionAgent
from .execution.code_blocks import CodeBlock, ExecutionResult, find_blocks
from .execution.workspace import guest_source
from .messages import Message, TextMessage, render
from .runtime.runtime import Runtime
from .trace.log import Trace

HARNESS = guest_source("test_harness")
LOOP = "review_loop"
TASK_TESTS = "test_task.py"
_TEST_FUNCTION = re.compile(r"^\s*def test", re.M)


@dataclass
class ReviewRound:
    """One round: the code written, the test files run, the run's result and the review."""

    number: int
    code: str | None
    """The solution the specialist wrote; None when its answer held no code."""
    tests: dict[str, str]
    execution: ExecutionResult | None
    review: str | None
    passed: bool
    answer: str = ""
    """The specialist's whole answer."""


@dataclass
class ReviewResult:
    """How the loop ended. `code` is the passing solution, or else the last one written."""

    passed: bool
    passed_round: int | None
    code: str | None
    rounds: list[ReviewRound]
    trace: Trace
    runtime: Runtime = field(repr=False)


async def code_review_loop(
    specialist: ChatAgent,
    runner: CodeExecutionAgent,
    reviewer: ChatAgent | None,
    task: str,
    tests: str | None,
    max_rounds: int = 3,
    *,
    runtime: Runtime | None = None,
    trace: Trace | str | Path | None = None,
    on_round: Callable[[ReviewRound], None] | None = None,
) -> ReviewResult:
    """Run rounds of write → test in the sandbox → review until the tests pass or
    `max_rounds` rounds are used. Messages and sandbox runs are recorded in the runtime's
    trace (the agents' runtime, `runtime`, or a new one writing to `trace`)."""
    if max_rounds < 1:
        raise ConfigError("max_rounds must be at least 1")
    if not isinstance(runner, CodeExecutionAgent):
        raise ConfigError("the runner must be a CodeExecutionAgent")
    agents = [specialist, runner, *([reviewer] if reviewer else [])]
    rt = _runtime(agents, runtime, trace)
    rounds: list[ReviewRound] = []
    feedback: str | None = None
    for number in range(1, max_rounds + 1):
        prompt = _specialist_prompt(task, tests, number, max_rounds, feedback)
        answer = _text(await _exchange(rt, specialist, TextMessage(content=prompt)))
        done = await _round(rt, number, answer, tests, runner, reviewer, task)
        rounds.append(done)
        if on_round is not None:
            on_round(done)
        if done.passed:
            return ReviewResult(True, number, done.code, rounds, rt.trace, rt)
        feedback = _feedback(done, reviewer)
    last = next((r.code for r in reversed(rounds) if r.code is not None), None)
    return ReviewResult(False, None, last, rounds, rt.trace, rt)


async def _round(
    rt: Runtime,
    number: int,
    answer: str,
    tests: str | None,
    runner: CodeExecutionAgent,
    reviewer: ChatAgent | None,
    task: str,
) -> ReviewRound:
    solution, files = split_answer(answer)
    if solution is None:
        return ReviewRound(number, None, files, None, None, False, answer)
    if tests is not None:
        files[TASK_TESTS] = tests
    block = CodeBlock(code=HARNESS, files={"solution.py": solution, **files})
    reply = await _exchange(rt, runner, block)
    if not isinstance(reply, ExecutionResult):
        raise ConfigError(f"{runner.name} answered with a {type(reply).__name__}")
    review = None
    if reviewer is not None:
        request = _review_prompt(task, solution, reply, number)
        # The tests decide, not the reviewer: a reviewer whose model fails (or whose content
        # is blocked) leaves the round without a review rather than ending the loop.
        with contextlib.suppress(ModelError, ContentBlockedError):
            review = _text(await _exchange(rt, reviewer, TextMessage(content=request)))
    return ReviewRound(number, solution, files, reply, review, _passed(reply), answer)


_SUMMARY = re.compile(r"(\d+) passed, 0 failed\n?\Z")


def _passed(result: ExecutionResult) -> bool:
    """Exit 0 *and* the harness's own last line: a solution that ends the process early with
    os._exit(0) (at import, or in a test) has not passed anything. Output cut at its limit
    has lost that line: the exit status decides then."""
    if result.stdout_truncated:
        return result.ok
    summary = _SUMMARY.search(result.stdout)
    return result.ok and summary is not None and int(summary.group(1)) > 0


def split_answer(answer: str) -> tuple[str | None, dict[str, str]]:
    """The solution and the specialist's own test files, from its answer's python blocks."""
    solution: str | None = None
    tests: dict[str, str] = {}
    for block in find_blocks(answer, "python"):
        if block.language != "python":
            continue
        name = block.filename or ""
        if name.startswith("test") or (not name and _TEST_FUNCTION.search(block.code)):
            tests[name if name.startswith("test_") else f"test_own_{len(tests) + 1}.py"] = (
                block.code
            )
        elif solution is None or name == "solution.py":
            solution = block.code
    return solution, tests


def _runtime(
    agents: list[ChatAgent], runtime: Runtime | None, trace: Trace | str | Path | None
) -> Runtime:
    owners = {id(a.runtime): a.runtime for a in agents if isinstance(a.runtime, Runtime)}
    if runtime is None and len(owners) > 1:
        raise ConfigError("the loop's agents belong to different runtimes")
    rt = runtime or next(iter(owners.values()), None) or Runtime(trace=trace)
    for agent in agents:
        if rt.agents.get(agent.name) is not agent:
            rt.register(agent)
    return rt


async def _exchange(rt: Runtime, agent: ChatAgent, message: Message) -> Message:
    """Send `message` to `agent` from the loop and return the agent's answer to the loop."""
    await rt.send(message, to=agent.name, sender=LOOP)
    answers = [m for m in await rt.run_until_idle() if LOOP in m.recipients]
    if not answers:
        raise ConfigError(
            f"{agent.name} did not answer the review loop",
            hint="its on_message must `await ctx.reply(...)`",
        )
    return answers[-1]


def _text(message: Message) -> str:
    return message.content if isinstance(message, TextMessage) else render(message)


def _specialist_prompt(
    task: str, tests: str | None, number: int, max_rounds: int, feedback: str | None
) -> str:
    if feedback is not None:
        return (
            f"Round {number} of {max_rounds}: the tests did not pass.\n\n{feedback}\n\n"
            "Reply with the whole corrected solution.py in one ```python block."
        )
    parts = [
        f"Task: {task}",
        "Answer with the solution as a Python module in one ```python block; it is saved as "
        "solution.py. You may add tests in further ```python blocks: functions named test_* "
        "that import from solution and use plain asserts.",
    ]
    if tests is not None:
        parts.append(f"These tests must pass (test_task.py):\n```python\n{tests.rstrip()}\n```")
    return "\n\n".join(parts)


def _review_prompt(task: str, solution: str, result: ExecutionResult, number: int) -> str:
    verdict = "PASSED" if result.ok else "FAILED"
    return (
        f"Review, round {number}. Task: {task}\n\nsolution.py:\n```python\n{solution.rstrip()}\n"
        f"```\n\nThe tests {verdict} in the sandbox:\n{result.describe()}\n\n"
        "Give the author short, concrete feedback."
    )


def _feedback(done: ReviewRound, reviewer: ChatAgent | None) -> str:
    if done.execution is None:
        return "Your answer held no ```python block, so nothing could be tested."
    parts = [f"The test run in the sandbox:\n{done.execution.describe()}"]
    if done.review and reviewer is not None:
        parts.append(f"{reviewer.name} says:\n{done.review}")
    return "\n\n".join(parts)

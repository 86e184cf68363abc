"""code_review_loop: write, test in the real sandbox, review, retry, with scripted models."""

from __future__ import annotations

import asyncio

import pytest

from stockade.agents import (
    ChatAgent,
    CodeExecutionAgent,
    ConfigError,
    Context,
    ExecutionResult,
    Message,
    ModelResponse,
    ModelUnavailableError,
    ScriptedModel,
)
from stockade.agents.patterns import code_review_loop, split_answer

pytestmark = pytest.mark.usefixtures("real_sandbox")

TESTS = """from solution import add

def test_small():
    assert add(2, 3) == 5

def test_negative():
    assert add(-2, -3) == -5, f"add(-2, -3) gave {add(-2, -3)}"
"""
WRONG = "```python\ndef add(a, b):\n    return abs(a) + abs(b)\n```"
RIGHT = "Fixed.\n```python\ndef add(a, b):\n    return a + b\n```"


def agents(
    answers: list[str], reviews: list[str | ModelResponse] | None = None
) -> tuple[ChatAgent, CodeExecutionAgent, ChatAgent | None]:
    runner = CodeExecutionAgent("code_runner", timeout=10)
    specialist = ChatAgent("specialist", "You write Python.", model=ScriptedModel(answers))
    reviewer = None
    if reviews is not None:
        reviewer = ChatAgent("reviewer", tools=[runner.as_tool()], model=ScriptedModel(reviews))
    return specialist, runner, reviewer


def test_the_loop_converges_when_the_second_attempt_passes() -> None:
    specialist, runner, reviewer = agents([WRONG, RIGHT], ["negatives fail", "good"])
    seen: list[int] = []
    result = asyncio.run(
        code_review_loop(
            specialist,
            runner,
            reviewer,
            "add two numbers",
            TESTS,
            3,
            on_round=lambda r: seen.append(r.number),
        )
    )
    assert result.passed and result.passed_round == 2 and seen == [1, 2]
    assert result.code == "def add(a, b):\n    return a + b\n"
    first, second = result.rounds
    assert first.execution is not None and first.execution.status == "nonzero_exit"
    assert "test_task.py::test_negative ... FAILED" in first.execution.stdout
    assert "add(-2, -3) gave 5" in first.execution.stdout
    assert second.execution is not None and second.execution.ok
    assert "2 passed, 0 failed" in second.execution.stdout
    assert (first.review, second.review) == ("negatives fail", "good")
    assert len(result.trace.of_kind("sandbox_run")) == 2
    # the specialist's second prompt carried the failing run and the review
    assert isinstance(specialist.model, ScriptedModel)
    retry = specialist.model.calls[1][0][-1]["content"]
    assert "Round 2 of 3" in retry and "add(-2, -3) gave 5" in retry and "negatives fail" in retry


def test_the_loop_works_with_a_stateful_runner() -> None:
    # one interpreter for all rounds: each round's solution and tests are its block's files
    runner = CodeExecutionAgent("code_runner", timeout=10, stateful=True)
    specialist = ChatAgent("specialist", "You write Python.", model=ScriptedModel([WRONG, RIGHT]))
    try:
        result = asyncio.run(code_review_loop(specialist, runner, None, "add", TESTS, 3))
    finally:
        runner.close()
    assert result.passed and result.passed_round == 2
    assert "1 passed, 1 failed" in result.rounds[0].execution.stdout  # type: ignore[union-attr]


def test_a_failing_reviewer_does_not_end_the_loop() -> None:
    specialist, runner, reviewer = agents([RIGHT], [ModelUnavailableError("503 from the reviewer")])
    result = asyncio.run(code_review_loop(specialist, runner, reviewer, "add", TESTS, 3))
    assert result.passed and result.passed_round == 1  # the tests decide, not the reviewer
    assert result.rounds[0].review is None
    assert result.trace.of_kind("error")  # the reviewer's failure is in the trace


def test_a_solution_that_exits_early_has_not_passed() -> None:
    cheat = "```python\nimport os\nos._exit(0)\n```"  # exit 0 before a test has run
    forge = (  # a wrong add, and an exit handler that prints a passing count after the real one
        "```python\nimport atexit, os, sys\n"
        "atexit.register(lambda: (print('1 passed, 0 failed'), sys.stdout.flush(), os._exit(0)))\n"
        "def add(a, b):\n    return a - b\n```"
    )
    specialist, runner, _ = agents([cheat, forge, RIGHT])
    result = asyncio.run(code_review_loop(specialist, runner, None, "add", TESTS, 3))
    first, second, _ = result.rounds
    assert not first.passed and first.execution is not None and first.execution.ok
    assert not second.passed
    assert result.passed and result.passed_round == 3


def test_a_passing_solution_that_prints_a_lot_passes() -> None:
    chatty = "```python\nfor i in range(300):\n    print('debug line', i)\n\ndef add(a, b):\n"
    chatty += "    return a + b\n```"
    specialist = ChatAgent("specialist", "You write Python.", model=ScriptedModel([chatty]))
    runner = CodeExecutionAgent("code_runner", timeout=10, max_output_size=1000)
    result = asyncio.run(code_review_loop(specialist, runner, None, "add", TESTS, 2))
    first = result.rounds[0].execution
    assert first is not None and first.stdout_truncated  # the count itself was cut off
    assert result.passed and result.passed_round == 1


def test_the_loop_stops_at_max_rounds_when_nothing_passes() -> None:
    specialist, runner, _ = agents([WRONG, WRONG, WRONG, RIGHT])
    result = asyncio.run(code_review_loop(specialist, runner, None, "add", TESTS, max_rounds=3))
    assert not result.passed and result.passed_round is None
    assert len(result.rounds) == 3 and not any(r.passed for r in result.rounds)
    assert result.code == "def add(a, b):\n    return abs(a) + abs(b)\n"
    assert isinstance(specialist.model, ScriptedModel) and specialist.model.remaining == 1


def test_the_reviewer_may_run_code_in_the_sandbox() -> None:
    probe = ModelResponse.calling(
        "run_code", {"code": "from solution import add; print(add(-1, -1))"}
    )
    specialist, runner, reviewer = agents([WRONG, RIGHT], [probe, "add(-1, -1) gives 2", "ok"])
    result = asyncio.run(code_review_loop(specialist, runner, reviewer, "add", TESTS, 2))
    assert result.passed_round == 2
    calls = result.trace.of_kind("tool_call")
    assert len(calls) == 1 and "status: ok" in calls[0].result  # type: ignore[attr-defined]
    assert "\n2" in calls[0].result  # type: ignore[attr-defined]
    assert len(result.trace.of_kind("sandbox_run")) == 3


def test_an_answer_without_code_fails_its_round_with_a_clear_feedback() -> None:
    specialist, runner, _ = agents(["I think it is easy.", RIGHT])
    result = asyncio.run(code_review_loop(specialist, runner, None, "add", TESTS, 2))
    assert result.passed_round == 2 and result.rounds[0].code is None
    assert isinstance(specialist.model, ScriptedModel)
    assert "no ```python block" in specialist.model.calls[1][0][-1]["content"]


def test_the_specialists_own_tests_run_too() -> None:
    mine = "from solution import add\n\ndef test_zero():\n    assert add(0, 0) == 1\n"
    own = f"{RIGHT}\n```python\n{mine}```"
    specialist, runner, _ = agents([own])
    result = asyncio.run(code_review_loop(specialist, runner, None, "add", TESTS, 1))
    assert not result.passed
    execution = result.rounds[0].execution
    assert execution is not None and "test_own_1.py::test_zero ... FAILED" in execution.stdout


def test_without_given_tests_the_specialist_must_write_some() -> None:
    specialist, runner, _ = agents([RIGHT])
    result = asyncio.run(code_review_loop(specialist, runner, None, "add", None, 1))
    execution = result.rounds[0].execution
    assert not result.passed and execution is not None
    assert "0 passed, 0 failed" in execution.stdout


def test_split_answer_finds_the_solution_and_the_tests() -> None:
    answer = (
        "```python test_mine.py\nfrom solution import f\n```\n"
        "```python\ndef f():\n    return 1\n```\n"
        "```bash\necho ignored\n```\n"
        "```python\nfrom solution import f\ndef test_f():\n    assert f() == 1\n```"
    )
    solution, tests = split_answer(answer)
    assert solution == "def f():\n    return 1\n"
    assert sorted(tests) == ["test_mine.py", "test_own_2.py"]


class Silent(ChatAgent):
    async def on_message(self, message: Message, ctx: Context) -> None:
        return None


def test_misconfigured_loops_are_refused() -> None:
    specialist, runner, _ = agents([RIGHT])
    with pytest.raises(ConfigError, match="max_rounds"):
        asyncio.run(code_review_loop(specialist, runner, None, "add", TESTS, 0))
    with pytest.raises(ConfigError, match="CodeExecutionAgent"):
        asyncio.run(code_review_loop(specialist, specialist, None, "add", TESTS, 1))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="did not answer"):
        asyncio.run(code_review_loop(Silent("quiet"), runner, None, "add", TESTS, 1))


def test_results_are_typed_messages_in_the_trace() -> None:
    specialist, runner, _ = agents([RIGHT])
    result = asyncio.run(code_review_loop(specialist, runner, None, "add", TESTS, 1))
    kinds = [m.message.get("type") for m in result.trace.of_kind("message")]  # type: ignore[attr-defined]
    assert kinds == ["TextMessage", "TextMessage", "CodeBlock", "ExecutionResult"]
    assert isinstance(result.runtime.conversation[-1], ExecutionResult)

"""`python -m stockade.agents.demo`: a model writes code, the sandbox runs its tests, a reviewer
reads the result, and the model fixes its code until the tests pass. Runs offline in seconds.

Offline (the default, or `--offline`) the models are scripted: the first solution has a bug,
the tests fail in the sandbox, the reviewer checks a case in the sandbox, and the second
solution passes. With a real model configured in the environment the same loop runs on it:

    OPENAI_API_KEY [OPENAI_BASE_URL] [OPENAI_MODEL]                 OpenAI or a compatible server
    AZURE_OPENAI_ENDPOINT AZURE_OPENAI_API_KEY AZURE_OPENAI_DEPLOYMENT [OPENAI_API_VERSION]

Exits 0 when the tests passed, 1 when they did not within the rounds, 2 when the sandbox or
the model could not be used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

from stockade import SandboxError

from .agent import ChatAgent
from .errors import AgentError
from .execution.agent import CodeExecutionAgent
from .models.base import ModelClient, ModelResponse
from .models.openai import OpenAIModel
from .models.scripted import ScriptedModel
from .patterns import ReviewRound, code_review_loop
from .runtime.runtime import Runtime
from .trace.events import ToolCallEvent

TASK = (
    "Write median(values): the median of a non-empty list of numbers; for an even count, "
    "the mean of the two middle values."
)
TESTS = """\
from solution import median


def test_odd_count():
    assert median([3, 1, 2]) == 2


def test_even_count():
    got = median([4, 1, 3, 2])
    assert got == 2.5, f"median([4, 1, 3, 2]) returned {got}, expected 2.5"


def test_input_left_alone():
    values = [3, 1, 2]
    median(values)
    assert values == [3, 1, 2], "median() must not reorder its argument"
"""
BUGGY = """\
Here is a first version:

```python
def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
```
"""
FIXED = """\
Right: an even count needs the mean of the two middle values.

```python
def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
```

```python
from solution import median


def test_two_values():
    assert median([1, 2]) == 1.5
```
"""
PROBE = "from solution import median\nprint(median([1, 2, 3, 4]))"
SPECIALIST_PROMPT = (
    "You are a careful Python developer. Answer with code in fenced ```python blocks: the "
    "solution module first, then any tests of your own."
)
REVIEWER_PROMPT = (
    "You review Python code and its test results. The run_code tool runs code in a sandbox "
    "whose working directory holds solution.py and the tests. Be brief and concrete."
)


def scripted_models() -> tuple[ModelClient, ModelClient]:
    specialist = ScriptedModel([BUGGY, FIXED], name="scripted")
    reviewer = ScriptedModel(
        [
            ModelResponse.calling("run_code", {"code": PROBE}),
            "median([1, 2, 3, 4]) gives 3 in the sandbox: for an even count it must average "
            "the two middle values (2.5). The odd case and the sorting are fine.",
            "All tests pass, including the even case. Looks good to me.",
        ],
        name="scripted",
    )
    return specialist, reviewer


def model_from_env() -> ModelClient | None:
    """A real model client if the environment configures one, else None."""
    env = os.environ
    if env.get("AZURE_OPENAI_ENDPOINT") and env.get("AZURE_OPENAI_API_KEY"):
        return OpenAIModel.azure(
            endpoint=env["AZURE_OPENAI_ENDPOINT"],
            deployment=env.get("AZURE_OPENAI_DEPLOYMENT", "gpt-4o-mini"),
            api_version=env.get("OPENAI_API_VERSION", "2024-10-21"),
            api_key=env["AZURE_OPENAI_API_KEY"],
        )
    if env.get("OPENAI_API_KEY"):
        return OpenAIModel(
            env.get("OPENAI_MODEL", "gpt-4o-mini"), base_url=env.get("OPENAI_BASE_URL") or None
        )
    return None


class Transcript:
    """Prints each round as it ends: the code, the test run, the reviewer's sandbox checks
    and words."""

    def __init__(self, runtime: Runtime, max_rounds: int) -> None:
        self.runtime = runtime
        self.max_rounds = max_rounds
        self.seen = 0

    def __call__(self, done: ReviewRound) -> None:
        print(f"\n── round {done.number} of {self.max_rounds} " + "─" * 50)
        if done.code is None:
            print("specialist: (no code in the answer)")
        else:
            print("specialist wrote solution.py:")
            print(_indent(done.code))
        if done.execution is not None:
            result = done.execution
            verdict = "PASSED" if result.ok else "FAILED"
            print(
                f"sandbox: tests {verdict} ({result.status}, exit code {result.exit_code}, "
                f"{result.duration:.2f} s)"
            )
            print(_indent(result.stdout or result.stderr or result.error or ""))
        events = self.runtime.trace.events
        for event in events[self.seen :]:
            if isinstance(event, ToolCallEvent):
                print(f"{event.agent} ran in the sandbox ({event.tool}):")
                print(_indent(_code_of(event.arguments)))
                print(_indent(event.result).replace("    ", "    → ", 1))
        self.seen = len(events)
        if done.review:
            print("reviewer:")
            print(_indent(textwrap.fill(done.review, 88)))


async def run(offline: bool, max_rounds: int, trace: Path) -> int:
    real = None if offline else model_from_env()
    specialist_model, reviewer_model = (real, real) if real else scripted_models()
    runtime = Runtime(trace=trace)
    runner = CodeExecutionAgent("code_runner", timeout=30)
    specialist = ChatAgent("specialist", SPECIALIST_PROMPT, model=specialist_model)
    reviewer = ChatAgent(
        "reviewer", REVIEWER_PROMPT, tools=[runner.as_tool()], model=reviewer_model
    )
    print("Stockade demo: a model writes code, the sandbox runs the tests, a reviewer reads them.")
    print(f"model: {real.name if real else 'scripted (offline)'}   sandbox: built-in")
    print(f"task: {TASK}")
    print("tests (test_task.py):")
    print(_indent(TESTS))
    try:
        result = await code_review_loop(
            specialist,
            runner,
            reviewer,
            TASK,
            TESTS,
            max_rounds,
            runtime=runtime,
            on_round=Transcript(runtime, max_rounds),
        )
    finally:
        runner.close()  # its sandbox keeps the next run set up
    print()
    if result.passed:
        print(f"Result: the tests passed in round {result.passed_round} of {max_rounds}.")
    else:
        print(f"Result: the tests still failed after {max_rounds} round(s).")
    print(f"Trace: {trace}  (see it with: python -m stockade.agents.trace {trace})")
    return 0 if result.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stockade.agents.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--offline", action="store_true", help="use the scripted model")
    parser.add_argument("--rounds", type=int, default=3, help="most rounds (default 3)")
    parser.add_argument("--trace", type=Path, help="where to write the JSON-lines trace")
    args = parser.parse_args(argv)
    trace = args.trace or Path(tempfile.mkdtemp(prefix="agents-demo-")) / "demo.jsonl"
    try:
        return asyncio.run(run(args.offline, args.rounds, trace))
    except (SandboxError, AgentError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2


def _indent(text: str) -> str:
    return textwrap.indent(text.rstrip(), "    ")


def _code_of(arguments: str) -> str:
    try:
        return str(json.loads(arguments)["code"])
    except (ValueError, KeyError, TypeError):
        return arguments


if __name__ == "__main__":
    sys.exit(main())

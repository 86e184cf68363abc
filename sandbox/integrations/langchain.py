"""A LangChain tool that runs Python in Stockade, for `create_agent(model, tools=[...])` and
anything else that takes a LangChain `BaseTool`.

    from stockade.integrations.langchain import python_tool
    agent = create_agent(model, tools=[python_tool(Sandbox())])

The tool answers with content and artifact: the model reads the run's text (stdout, stderr,
and a note when it did not end well), and the `ToolMessage.artifact` is the Result's JSON
object (`Result.to_dict()`: status, exit code, times, peak memory) for the program to inspect.
"""

from __future__ import annotations

from typing import Any

from stockade import Result, Sandbox

from . import missing
from .report import as_text

try:
    from langchain_core.tools import StructuredTool
except ImportError as error:
    raise missing(__name__, "langchain", error) from error

DESCRIPTION = (
    "Run a Python program in a sandbox (no network, a fresh filesystem each call) and return"
    " what it printed. Print what you want to see."
)


def python_tool(
    sandbox: Sandbox | None = None, *, name: str = "run_python", description: str = DESCRIPTION
) -> StructuredTool:
    """A tool whose one argument, `code`, is a Python program run by `sandbox.run_code` (a
    fresh run each call, or a warm pooled one with `Sandbox(pool=N)`)."""
    box = sandbox or Sandbox()

    def answer(result: Result) -> tuple[str, dict[str, Any]]:
        return as_text(result), result.to_dict()

    def run_python(code: str) -> tuple[str, dict[str, Any]]:
        return answer(box.run_code(code))

    async def arun_python(code: str) -> tuple[str, dict[str, Any]]:
        return answer(await box.arun_code(code))

    return StructuredTool.from_function(
        func=run_python,
        coroutine=arun_python,
        name=name,
        description=description,
        response_format="content_and_artifact",
    )

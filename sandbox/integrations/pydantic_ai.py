"""A Pydantic AI tool that runs Python in Stockade.

    from stockade.integrations.pydantic_ai import python_tool
    agent = Agent(model, tools=[python_tool(Sandbox())])

The model reads the run's text: stdout, stderr, and a note when it did not end well (a
non-zero exit or a timeout is something for the model to read and fix, not a tool failure).
"""

from __future__ import annotations

from stockade import Sandbox

from . import missing
from .report import as_text

try:
    from pydantic_ai import Tool
except ImportError as error:
    raise missing(__name__, "pydantic-ai", error) from error


def python_tool(sandbox: Sandbox | None = None, *, name: str = "run_python") -> Tool[None]:
    """A tool whose one argument, `code`, is a Python program run by `sandbox.arun_code`
    (fresh each call, or warm with `Sandbox(pool=N)`)."""
    box = sandbox or Sandbox()

    async def run_python(code: str) -> str:
        """Run a Python program in a sandbox (no network, a fresh filesystem each call) and
        return what it printed. Print what you want to see.

        Args:
            code: the Python program.
        """
        return as_text(await box.arun_code(code))

    return Tool(run_python, takes_ctx=False, name=name)

"""An OpenAI Agents SDK function tool that runs Python in Stockade.

    from stockade.integrations.openai_agents import python_tool
    agent = Agent(name="analyst", tools=[python_tool(Sandbox())])

The model reads the run's text: stdout, stderr, and a note when it did not end well. The SDK's
own `timeout` for the tool is left unset: the sandbox's policy (or `timeout=`) ends the run,
and the model reads "status timeout".
"""

from __future__ import annotations

from stockade import Sandbox

from . import missing
from .report import as_text

try:
    from agents import FunctionTool, function_tool
except ImportError as error:
    raise missing(__name__, "openai-agents", error) from error


def python_tool(
    sandbox: Sandbox | None = None, *, name: str = "run_python", timeout: float | None = None
) -> FunctionTool:
    """A function tool whose one argument, `code`, is a Python program run by
    `sandbox.arun_code` (fresh each call, or warm with `Sandbox(pool=N)`). `timeout` is each
    run's wall-clock limit in seconds, the policy's by default."""
    box = sandbox or Sandbox()

    async def run_python(code: str) -> str:
        """Run a Python program in a sandbox (no network, a fresh filesystem each call) and
        return what it printed. Print what you want to see.

        Args:
            code: the Python program.
        """
        return as_text(await box.arun_code(code, timeout=timeout))

    return function_tool(run_python, name_override=name)

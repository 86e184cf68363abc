"""Microsoft Agent Framework: an `execute_code` tool that runs Python in Stockade, in the shape
of the framework's Monty and Hyperlight tools (one argument, `code`; the answer a list of
`Content`), so a switch of backend is an import change.

    from stockade.integrations.agent_framework import StockadeExecuteCodeTool
    agent = Agent(client=client, tools=[StockadeExecuteCodeTool(Sandbox())])

What the model reads is the run's text (stdout, stderr, a note when it did not end well). A
run that did not end well (a non-zero exit, a timeout, out of memory) also answers
`Content.from_error(message="Execution <status>")`, as Monty answers an exception, after the
text: the framework shows the model a result's text items only. The tool itself never raises
for what the program did.
"""

from __future__ import annotations

from typing import Any

from stockade import Result, Sandbox

from . import missing
from .report import as_text

try:
    from agent_framework import Content, FunctionTool
except ImportError as error:
    raise missing("agent-framework", error) from error

DESCRIPTION = (
    "Execute Python code in a sandbox (no network, a fresh filesystem each call) and return"
    " what it printed. Print what you want to see."
)
INPUT_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "string", "description": "The Python code to execute."}},
    "required": ["code"],
}


class StockadeExecuteCodeTool(FunctionTool):
    """The `execute_code` tool over `sandbox.arun_code`: a fresh sandbox each call, or a warm
    pooled one with `Sandbox(pool=N)`. `approval_mode` is the framework's ("never_require"
    by default, as Monty's: the sandbox is the safeguard)."""

    def __init__(
        self,
        sandbox: Sandbox | None = None,
        *,
        name: str = "execute_code",
        description: str = DESCRIPTION,
        approval_mode: Any = "never_require",
    ) -> None:
        self.sandbox = sandbox or Sandbox()
        super().__init__(
            name=name,
            description=description,
            approval_mode=approval_mode,
            func=self._run_code,
            input_model=INPUT_SCHEMA,
        )

    async def _run_code(self, *, code: str) -> list[Content]:
        return contents(await self.sandbox.arun_code(code))


def contents(result: Result) -> list[Content]:
    """A run as the framework's tool answer."""
    text = [Content.from_text(as_text(result))]
    if result.ok:
        return text
    return [*text, Content.from_error(message=f"Execution {result.status}")]

"""A CrewAI tool that runs Python in Stockade, in the slot CrewAI's removed
`CodeInterpreterTool` left (and its deprecated `allow_code_execution`).

    from stockade.integrations.crewai import StockadePythonTool
    agent = Agent(role="analyst", goal="...", backstory="...", tools=[StockadePythonTool()])

The agent reads the run's text: stdout, stderr, and a note when it did not end well.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stockade import Sandbox

from . import missing
from .report import as_text

try:
    from crewai.tools import BaseTool
except ImportError as error:
    raise missing(__name__, "crewai", error) from error


class PythonCode(BaseModel):
    code: str = Field(description="The Python program to run. Print what you want to see.")


class StockadePythonTool(BaseTool):
    """Runs a Python program by `sandbox.run_code`: a fresh sandbox each call, or a warm
    pooled one with `Sandbox(pool=N)`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    name: str = "run_python"
    description: str = (
        "Run a Python program in a sandbox (no network, a fresh filesystem each call) and"
        " return what it printed."
    )
    args_schema: type[BaseModel] = PythonCode
    sandbox: Sandbox = Field(default_factory=Sandbox, exclude=True)

    def _run(self, code: str) -> str:
        return as_text(self.sandbox.run_code(code))

    async def _arun(self, code: str) -> str:
        return as_text(await self.sandbox.arun_code(code))

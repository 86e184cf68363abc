"""Microsoft Agent Framework: an `execute_code` tool that runs Python in Stockade, and a
CodeAct provider, in the shape of the framework's Monty and Hyperlight ones (one argument,
`code`; the answer a list of `Content`; the agent's tools called from the code), so a switch
of backend is an import change.

    from stockade.integrations.agent_framework import StockadeExecuteCodeTool
    agent = Agent(client=client, tools=[StockadeExecuteCodeTool(Sandbox())])
    codeact = StockadeCodeActProvider(sandbox=Sandbox(), tools=[lookup_account])
    agent = Agent(client=client, context_providers=[codeact])

What the model reads is the run's text (stdout, stderr, a note when it did not end well). A
run that did not end well (a non-zero exit, a timeout, out of memory) also answers
`Content.from_error(message="Execution <status>")`, as Monty answers an exception, after the
text: the framework shows the model a result's text items only. The tool itself never raises
for what the program did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stockade import Result, Sandbox

from . import missing
from .hosted import host_function
from .report import as_text

try:
    from agent_framework import Content, ContextProvider, FunctionTool, normalize_tools
except ImportError as error:
    raise missing(__name__, "agent-framework", error) from error

DESCRIPTION = (
    "Execute Python code in a sandbox (no network, a fresh filesystem each call) and return"
    " what it printed. Print what you want to see."
)
INSTRUCTIONS = (
    "You have one primary tool: `execute_code`. It runs Python (real CPython, with files and"
    " subprocesses, no network) in a sandbox. Inside it, call the tools below as plain"
    " functions with keyword arguments: `result = tool_name(param=value)`, not awaited; each"
    " runs on the host and returns a JSON value. Print what you want to see. Prefer one"
    " `execute_code` call that combines several tool calls with Python control flow."
)
INPUT_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "string", "description": "The Python code to execute."}},
    "required": ["code"],
}


class StockadeExecuteCodeTool(FunctionTool):
    """The `execute_code` tool over `sandbox.arun_code`: a fresh sandbox each call, or a warm
    pooled one with `Sandbox(pool=N)`. `tools` (`FunctionTool`s or functions) are the code's
    host callbacks: plain functions inside, each call checked against the tool's parameters
    and run on the host by the tool itself, on the agent's event loop. `approval_mode` is the
    framework's ("never_require" by default, as Monty's: the sandbox is the safeguard), and
    becomes "always_require" while any of the tools requires approval."""

    def __init__(
        self,
        sandbox: Sandbox | None = None,
        *,
        tools: Any = None,
        name: str = "execute_code",
        approval_mode: Any = None,
    ) -> None:
        self.sandbox = sandbox or Sandbox()
        self._tools: dict[str, FunctionTool] = {}
        self._default_approval = approval_mode or "never_require"
        super().__init__(
            name=name,
            description=DESCRIPTION,
            approval_mode=self._default_approval,
            func=self._run_code,
            input_model=INPUT_SCHEMA,
        )
        self.add_tools(tools or [])

    def add_tools(self, tools: Any) -> None:
        """Add host tools (a `FunctionTool`, a function, or a list of them)."""
        for tool in normalize_tools(tools):
            if isinstance(tool, FunctionTool) and tool.name != self.name:
                self._tools[tool.name] = tool
        self._refresh()

    def get_tools(self) -> list[FunctionTool]:
        return list(self._tools.values())

    def remove_tool(self, name: str) -> None:
        self._tools.pop(name, None)
        self._refresh()

    def clear_tools(self) -> None:
        self._tools.clear()
        self._refresh()

    def _refresh(self) -> None:
        needs = any(tool.approval_mode == "always_require" for tool in self._tools.values())
        self.approval_mode = "always_require" if needs else self._default_approval
        self.description = DESCRIPTION + _tool_list(self.get_tools())

    async def _run_code(self, *, code: str) -> list[Content]:
        tools = {name: _host_tool(tool) for name, tool in self._tools.items()}
        return contents(await self.sandbox.arun_code(code, tools=tools or None))


class StockadeCodeActProvider(ContextProvider):
    """CodeAct in the shape of the framework's `MontyCodeActProvider`: before each run it
    gives the agent one `execute_code` tool (a copy for the run) and instructions naming the
    provider's tools, which the code calls on the host. The tools are managed here
    (`add_tools`, `get_tools`, `remove_tool`, `clear_tools`), not given to the agent
    directly: the model reaches them through code."""

    DEFAULT_SOURCE_ID = "stockade_codeact"

    def __init__(
        self,
        source_id: str = DEFAULT_SOURCE_ID,
        *,
        sandbox: Sandbox | None = None,
        tools: Any = None,
        approval_mode: Any = None,
    ) -> None:
        super().__init__(source_id)
        self._tool = StockadeExecuteCodeTool(sandbox, tools=tools, approval_mode=approval_mode)

    def add_tools(self, tools: Any) -> None:
        self._tool.add_tools(tools)

    def get_tools(self) -> list[FunctionTool]:
        return self._tool.get_tools()

    def remove_tool(self, name: str) -> None:
        self._tool.remove_tool(name)

    def clear_tools(self) -> None:
        self._tool.clear_tools()

    async def before_run(self, *, agent: Any, session: Any, context: Any, state: Any) -> None:
        tool = self._tool
        run_tool = StockadeExecuteCodeTool(
            tool.sandbox, tools=tool.get_tools(), approval_mode=tool._default_approval
        )
        context.extend_instructions(self.source_id, INSTRUCTIONS + _tool_list(tool.get_tools()))
        context.extend_tools(self.source_id, [run_tool])


def _host_tool(tool: FunctionTool) -> Callable[..., Any]:
    """The framework's tool as a host callback: its parameters' schema as the signature, the
    tool's own `invoke` (its validation, middleware-free) as the body."""
    schema = tool.parameters()

    async def call(**arguments: Any) -> Any:
        return await tool.invoke(skip_parsing=True, **arguments)

    properties, required = schema.get("properties", {}), schema.get("required", [])
    return host_function(tool.name, tool.description, properties, required, call)


def _tool_list(tools: list[FunctionTool]) -> str:
    if not tools:
        return ""
    lines = [
        f"- `{t.name}({', '.join(t.parameters().get('properties', {}))})`: {t.description}"
        for t in tools
    ]
    return "\n\nTools the code can call (plain functions, keyword arguments):\n" + "\n".join(lines)


def contents(result: Result) -> list[Content]:
    """A run as the framework's tool answer."""
    text = [Content.from_text(as_text(result))]
    if result.ok:
        return text
    return [*text, Content.from_error(message=f"Execution {result.status}")]

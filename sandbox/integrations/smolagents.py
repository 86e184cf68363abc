"""A smolagents `PythonExecutor` for `CodeAgent` over a Stockade session: the agent's code
runs confined, its variables and imports stay between steps (as in the E2B, Docker and Modal
executors), and the agent's tools stay on the host.

    from stockade.integrations.smolagents import StockadeExecutor
    agent = CodeAgent(tools=[web_search], model=model, executor=StockadeExecutor(sandbox=box))

smolagents' remote executors redefine each tool inside the sandbox from its source, with its
module's imports. Here the tools are host callbacks instead: inside, each is a plain function
whose call goes to the host over the session's tool channel, where the agent's own `Tool`
object runs (its arguments checked against the tool's `inputs`; its result must be JSON).
So a tool keeps its credentials, clients and packages on the host, and managed agents run
there too. `final_answer(value)` ends the step with that value.

Packages are never installed at run time (no network): `additional_imports` are checked to be
importable inside the sandbox, where the policy shows them (docs/environments.md), and a
missing one is an `AgentError` at once rather than at the agent's first step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stockade import Sandbox, SessionError

from . import missing
from .hosted import host_function
from .notebook import Cell, Notebook
from .report import as_text

try:
    from smolagents.local_python_executor import CodeOutput
    from smolagents.monitoring import AgentLogger, LogLevel
    from smolagents.remote_executors import RemotePythonExecutor
    from smolagents.tools import Tool
    from smolagents.utils import AgentError
except ImportError as error:
    raise missing(__name__, "smolagents", error) from error

# Inside: the final answer ends the step as an exception the code does not catch (a
# BaseException, as smolagents' own), carrying the value; and a lookup for packages.
_PRELUDE = """
class FinalAnswerException(BaseException):
    def __init__(self, value):
        self.value = value

def final_answer(answer):
    raise FinalAnswerException(answer)

def _stockade_finds(name):
    import importlib.metadata, importlib.util
    try:
        return importlib.util.find_spec(name) is not None or importlib.metadata.distribution(name)
    except (ImportError, ValueError):
        return False
"""


class StockadeExecutor(RemotePythonExecutor):
    """Runs a `CodeAgent`'s code in one Stockade session. `sandbox` is borrowed (the caller
    closes it), else one is made on the default policy and closed by `cleanup()`; `timeout`
    is each step's, the policy's by default; `logger` is smolagents' (the agent's own logs go
    on through the agent's). The signature takes smolagents' `(additional_imports, logger)`
    first, as its built-in executors do."""

    def __init__(
        self,
        additional_imports: Sequence[str] = (),
        logger: AgentLogger | None = None,
        *,
        sandbox: Sandbox | None = None,
        allow_pickle: bool = False,
        timeout: float | None = None,
    ) -> None:
        logger = logger or AgentLogger(LogLevel.ERROR)
        super().__init__(list(additional_imports), logger, allow_pickle)
        self.sandbox = sandbox or Sandbox()
        self._own = sandbox is None
        self.timeout = timeout
        self.notebook: Notebook | None = None
        self.tools: dict[str, Tool] = {}
        self._variables: dict[str, Any] = {}
        self._open({})
        absent = self._absent(list(additional_imports))
        if absent:
            self.cleanup()
            raise AgentError(
                f"not importable in the sandbox: {absent}; make them visible through the"
                " policy's [python] settings (docs/environments.md)",
                self.logger,
            )
        self.installed_packages = list(additional_imports)

    def send_tools(self, tools: dict[str, Tool]) -> None:
        """The tools become the session's host tools (`final_answer` stays inside). A session's
        tools are fixed when it starts: new ones start a new session, and the variables sent
        before are sent again."""
        host = {name: tool for name, tool in tools.items() if name != "final_answer"}
        if host.keys() != self.tools.keys() or any(host[n] is not t for n, t in self.tools.items()):
            self._open(host)

    def send_variables(self, variables: dict[str, Any]) -> None:
        self._variables = dict(variables)
        super().send_variables(variables)

    def run_code_raise_errors(self, code: str) -> CodeOutput:
        cell = self._cell(code)
        logs = cell.result.stdout
        if cell.kind == "value":
            return CodeOutput(output=cell.value, logs=logs, is_final_answer=False)
        if cell.kind == "error" and cell.error_type == self.FINAL_ANSWER_EXCEPTION:
            return CodeOutput(output=cell.value, logs=logs, is_final_answer=True)
        if cell.kind == "stopped":  # a timeout or a limit: the Result says which
            what = as_text(cell.result._replace(stdout_bytes=b""))
        else:
            what = cell.traceback or f"{cell.error_type}: {cell.message}"
        raise AgentError(f"{logs}Executing code yielded an error:\n{what}", self.logger)

    def install_packages(self, additional_imports: list[str]) -> list[str]:
        """Nothing is installed (the sandbox has no network, and the tools run on the host):
        the packages asked for that are not visible inside are logged, not fatal."""
        absent = self._absent(additional_imports)
        if absent:
            self.logger.log(f"not importable in the Stockade sandbox, not installed: {absent}")
        return [name for name in additional_imports if name not in absent]

    def cleanup(self) -> None:
        if self.notebook is not None:
            self.notebook.close()
            self.notebook = None
        if self._own:
            self.sandbox.close()

    def _open(self, tools: dict[str, Tool]) -> None:
        if self.notebook is not None:
            self.notebook.close()
            self.notebook = None
        functions = {name: _host_tool(tool) for name, tool in tools.items()}
        session = self.sandbox.session(timeout=self.timeout, tools=functions or None)
        self.notebook, self.tools = Notebook(session), dict(tools)
        self._cell(_PRELUDE)
        if self._variables:
            super().send_variables(self._variables)

    def _absent(self, names: list[str]) -> list[str]:
        """The modules or distributions of `names` that the sandbox's Python cannot find."""
        if not names:
            return []
        cell = self._cell(f"[n for n in {names!r} if not _stockade_finds(n)]")
        if cell.kind != "value" or not isinstance(cell.value, list):
            raise AgentError(f"could not look for {names} in the sandbox: {cell}", self.logger)
        return [str(name) for name in cell.value]

    def _cell(self, code: str) -> Cell:
        if self.notebook is None:
            raise AgentError("the Stockade executor was cleaned up", self.logger)
        try:
            return self.notebook.run(code)
        except SessionError as exc:  # the interpreter is gone, and the agent's state with it
            raise AgentError(f"the sandboxed interpreter ended: {exc}", self.logger) from exc


def _host_tool(tool: Tool) -> Callable[..., Any]:
    """The tool (or managed agent) as a host callback with its `inputs` as parameters (a
    nullable one is optional), calling the tool itself."""
    options = {"sanitize_inputs_outputs": True} if isinstance(tool, Tool) else {}
    required = [name for name, spec in tool.inputs.items() if not spec.get("nullable")]

    def call(**arguments: Any) -> Any:
        return tool(**arguments, **options)

    return host_function(tool.name, tool.description, tool.inputs, required, call)

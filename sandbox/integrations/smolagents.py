"""A smolagents `PythonExecutor` for `CodeAgent` over a Stockade session: the agent's code
runs confined, and its variables, imports and tools stay between steps, as in the E2B,
Docker and Modal executors.

    from stockade.integrations.smolagents import StockadeExecutor
    agent = CodeAgent(tools=[], model=model, executor=StockadeExecutor(sandbox=Sandbox()))

It is smolagents' `RemotePythonExecutor` with Stockade as the remote: tools are sent as
their source and defined inside the sandbox (as smolagents does for every remote executor),
and `final_answer(...)` ends the run with the value it was given. Packages are never
installed at run time (no network): `additional_imports` are checked to be importable inside
the sandbox, where the policy shows them (docs/environments.md), and a missing one is an
`AgentError` at once rather than at the agent's first step.
"""

from __future__ import annotations

from collections.abc import Sequence

from stockade import Policy, Sandbox, SessionError

from . import missing
from .notebook import Cell, Notebook
from .report import as_text

try:
    from smolagents.local_python_executor import CodeOutput
    from smolagents.monitoring import AgentLogger, LogLevel
    from smolagents.remote_executors import RemotePythonExecutor
    from smolagents.utils import AgentError
except ImportError as error:
    raise missing("smolagents", error) from error


_FIND = """
def _stockade_finds(name):
    import importlib.metadata, importlib.util
    try:
        return importlib.util.find_spec(name) is not None or importlib.metadata.distribution(name)
    except (ImportError, ValueError):
        return False
"""


class StockadeExecutor(RemotePythonExecutor):
    """Runs a `CodeAgent`'s code in one Stockade session. `sandbox` is borrowed (the caller
    closes it), else one is made and closed by `cleanup()`, on the default policy showing
    this venv's packages (smolagents defines the agent's tools inside with their module's
    imports: PIL and numpy for `final_answer`); `timeout` is each step's, the
    policy's by default; `logger` is smolagents' (the agent's own logs go on through the
    agent's). The signature takes smolagents' `(additional_imports, logger)`
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
        super().__init__(
            list(additional_imports), logger or AgentLogger(LogLevel.ERROR), allow_pickle
        )
        self.sandbox = sandbox or Sandbox(Policy.load("default").override(site_packages=True))
        self._own = sandbox is None
        self.notebook: Notebook | None = Notebook(self.sandbox.session(timeout=timeout))
        absent = self._absent(list(additional_imports))
        if absent:
            self.cleanup()
            raise AgentError(
                f"not importable in the sandbox: {absent}; make them visible through the"
                " policy's [python] settings (docs/environments.md)",
                self.logger,
            )
        self.installed_packages = list(additional_imports)

    def run_code_raise_errors(self, code: str) -> CodeOutput:
        cell = self._cell(code)
        logs = cell.result.stdout
        if cell.kind == "value":
            return CodeOutput(output=cell.value, logs=logs, is_final_answer=False)
        if cell.kind == "error" and cell.error_type == self.FINAL_ANSWER_EXCEPTION:
            answer = self._deserialize_final_answer(cell.message, self.allow_pickle)
            return CodeOutput(output=answer, logs=logs, is_final_answer=True)
        what = (
            as_text(cell.result._replace(stdout_bytes=b""))
            if cell.kind == "stopped"
            else cell.traceback
        )
        raise AgentError(
            f"{logs}Executing code yielded an error:\n{what or cell.message}", self.logger
        )

    def install_packages(self, additional_imports: list[str]) -> list[str]:
        """Nothing is installed (the sandbox has no network). smolagents asks for the
        packages its tools' source names (its patched `final_answer` names PIL, on a path
        it takes only with pickles): those not visible inside are logged, not fatal."""
        absent = self._absent(additional_imports)
        if absent:
            self.logger.log(f"not importable in the Stockade sandbox, not installed: {absent}")
        return [name for name in additional_imports if name not in absent]

    def _absent(self, names: list[str]) -> list[str]:
        """The modules or distributions of `names` that the sandbox's Python cannot find."""
        if not names:
            return []
        cell = self._cell(f"{_FIND}\n[n for n in {names!r} if not _stockade_finds(n)]")
        if cell.kind != "value" or not isinstance(cell.value, list):
            raise AgentError(f"could not look for {names} in the sandbox: {cell}", self.logger)
        return [str(name) for name in cell.value]

    def cleanup(self) -> None:
        if self.notebook is not None:
            self.notebook.close()
            self.notebook = None
        if self._own:
            self.sandbox.close()

    def _cell(self, code: str) -> Cell:
        if self.notebook is None:
            raise AgentError("the Stockade executor was cleaned up", self.logger)
        try:
            return self.notebook.run(code)
        except SessionError as exc:  # the interpreter is gone, and the agent's state with it
            raise AgentError(f"the sandboxed interpreter ended: {exc}", self.logger) from exc

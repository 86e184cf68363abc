"""A DSPy `CodeInterpreter` over a Stockade session, for `dspy.ProgramOfThought`, `CodeAct`,
`RLM` and `Flex`: their code runs confined, with state kept between calls as the protocol asks.

    from stockade.integrations.dspy import StockadeInterpreter
    dspy.configure(interpreter_factory=StockadeInterpreter)  # a new session per module run

`execute(code, variables)` sets the (JSON) variables as globals, runs the code in the session
and answers as DSPy's own interpreters do: `FinalOutput` when the code called `SUBMIT(...)`,
else the last expression's value, else what the code printed (None for nothing). An exception
in the code, a timeout or a limit is a `CodeExecutionError` (the session and its state go on);
a `SyntaxError` is raised as one; a session that is gone (out of memory, killed) is a
`CodeInterpreterError`, and the interpreter is then over, as the protocol asks.

`tools` (RLM's `llm_query`, a module's own) are host callbacks: the code calls them as plain
functions, each call goes to the host over the session's tool channel, and the function runs
there, as with DSPy's own interpreters' tool protocol.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import Any

from stockade import PolicyError, Sandbox, SessionError

from . import missing
from .notebook import Cell, Notebook
from .report import as_text

try:
    from dspy.primitives.code_interpreter import (
        CodeExecutionError,
        CodeInterpreterError,
        FinalOutput,
    )
except ImportError as error:
    raise missing(__name__, "dspy", error) from error

# SUBMIT as DSPy's LocalInterpreter defines it: one value, or the output fields by name.
_SUBMIT = r"""
class _StockadeSubmit(Exception):
    def __init__(self, value):
        self.value = value

def SUBMIT(*args, **kwargs):
    fields = __stockade_output_fields__
    if fields is None:
        if len(args) != 1 or kwargs:
            raise TypeError("SUBMIT requires one output value")
        raise _StockadeSubmit({"output": args[0]})
    if args and kwargs:
        raise TypeError("SUBMIT accepts positional or keyword values, not both")
    values = dict(zip(fields, args)) if args else dict(kwargs)
    if set(values) != set(fields) or len(args) > len(fields):
        raise TypeError(f"SUBMIT takes exactly the output fields {fields}")
    raise _StockadeSubmit(values)
"""
_RESERVED = {"SUBMIT", "__builtins__", "__stockade_output_fields__"}


class StockadeInterpreter:
    """One session per interpreter: `start()` opens it (lazily on the first `execute`),
    `shutdown()` ends it. `sandbox` is borrowed (the caller closes it), else one is made and
    closed here. `output_fields` (DSPy's field dicts, each with a "name") shape `SUBMIT`;
    RLM sets the attribute itself."""

    def __init__(
        self,
        sandbox: Sandbox | None = None,
        *,
        output_fields: list[dict[str, Any]] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._sandbox, self._own = sandbox, sandbox is None
        self.output_fields = output_fields
        self.timeout = timeout
        self._tools: dict[str, Callable[..., Any]] = {}
        self._notebook: Notebook | None = None
        self._started_tools: dict[str, Callable[..., Any]] = {}
        self._ended = False

    @property
    def tools(self) -> dict[str, Callable[..., Any]]:
        """Host functions the code calls by name (RLM's `llm_query`, a module's tools): they
        run on the host, their JSON arguments checked against their type hints. A session's
        tools are fixed when it starts: change them before `start()` (RLM does)."""
        return self._tools

    def start(self) -> None:
        if self._ended:
            raise CodeInterpreterError("this interpreter was shut down; make a new one")
        if self._notebook is not None:
            return
        if self._sandbox is None:
            self._sandbox = Sandbox()
        self._started_tools = dict(self._tools)
        # Host tools are named by public identifiers; DSPy's own (its facade's
        # `__dspy_construct__`) may be private: those go by an alias, bound to their name.
        aliases = {
            name if not name.startswith("_") else f"private{i}{name}": name
            for i, name in enumerate(self._started_tools)
        }
        tools = {alias: self._started_tools[name] for alias, name in aliases.items()}
        try:
            session = self._sandbox.session(timeout=self.timeout, tools=tools)
            self._notebook = Notebook(session)
            binding = "".join(f"{n} = {a}\n" for a, n in aliases.items() if a != n)
            self._notebook.run(_SUBMIT + binding)
        except (SessionError, PolicyError) as exc:  # PolicyError: a tool it cannot describe
            self.shutdown()
            raise CodeInterpreterError(f"the Stockade session did not start: {exc}") from exc

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        variables = dict(variables or {})
        bad = [n for n in variables if not _free(n) or n in self._tools]
        if bad:
            raise CodeInterpreterError(f"variable names must be free identifiers: {bad!r}")
        self.start()
        assert self._notebook is not None
        if self._tools != self._started_tools:
            raise CodeInterpreterError("the tools changed after start(): make a new interpreter")
        fields = None if self.output_fields is None else [f["name"] for f in self.output_fields]
        try:
            cell = self._notebook.run(code, {**variables, "__stockade_output_fields__": fields})
        except SessionError as exc:
            self.shutdown()
            raise CodeInterpreterError(f"the Stockade session ended: {exc}") from exc
        except PolicyError as exc:  # variables that are not JSON
            raise CodeInterpreterError(str(exc)) from exc
        return _answer(cell)

    def shutdown(self) -> None:
        self._ended = True
        if self._notebook is not None:
            self._notebook.close()
            self._notebook = None
        if self._own and self._sandbox is not None:
            self._sandbox.close()

    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)

    def __enter__(self) -> StockadeInterpreter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _answer(cell: Cell) -> Any:
    printed = cell.result.stdout + cell.result.stderr
    if cell.kind == "syntax":
        raise SyntaxError(cell.message)
    if cell.kind == "error" and cell.error_type == "_StockadeSubmit":
        return FinalOutput(cell.value)
    if cell.kind == "error":
        raise CodeExecutionError(f"{cell.traceback or cell.error_type + ': ' + cell.message}")
    if cell.kind == "stopped":
        raise CodeExecutionError(as_text(cell.result))
    return cell.value if cell.value is not None else (printed or None)


def _free(name: str) -> bool:
    """A variable name the code may be given: an identifier, not one of the interpreter's."""
    return name.isidentifier() and not keyword.iskeyword(name) and name not in _RESERVED

"""Cells over a session, for the frameworks whose executor is a notebook kernel (smolagents,
DSPy): each cell runs in the session's one `__main__`, and the host learns how it ended (the
value of a last expression, or the exception it raised) as data rather than by parsing a
traceback out of stderr.

A small driver, defined in the session once, runs each cell: it injects the cell's variables,
runs the code and writes the outcome as JSON to a file in the sandbox's /tmp, which the host
reads back through the session. A file, not a marker line in stdout: the output limit may cut
stdout, and the cell's own prints stay exactly as they were. The outcome is written by code
that runs next to the model's, so it is the cell's own word about itself, taken as untrusted
data: read capped (the policy's `collect_size`), parsed as JSON, checked for its shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from stockade import PolicyError, Result, Session, SessionError

OUTCOME = "/tmp/.stockade-cell.json"
_DRIVER = r"""
def __stockade_cell__(code, variables, outcome):
    import ast, json, linecache, os, traceback
    def dump(kind, **fields):
        with open(outcome, "w") as file:
            json.dump({"kind": kind, **fields}, file, default=repr)
    if os.path.exists(outcome):
        os.remove(outcome)
    namespace = globals()
    namespace.update(variables)
    linecache.cache["<cell>"] = (len(code), None, code.splitlines(True), "<cell>")
    try:
        tree = ast.parse(code, "<cell>")
    except SyntaxError as exc:
        return dump("syntax", type="SyntaxError", message=str(exc), value=None, traceback="")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    try:
        exec(compile(tree, "<cell>", "exec"), namespace)
        value = None
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
    except KeyboardInterrupt:  # the call's timeout: the session reports it as such
        raise
    except BaseException as exc:  # smolagents' FinalAnswerException is a BaseException
        shown = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
        return dump("error", type=type(exc).__name__, message=str(exc),
                    value=getattr(exc, "value", None), traceback=shown)
    dump("value", value=value)
"""

Kind = Literal["value", "error", "syntax", "stopped"]


class Cell(NamedTuple):
    """How a cell ended. `kind`: "value" (it ran; `value` is its last expression's, JSON-ish
    or a repr), "error" (it raised `error_type`), "syntax" (it did not parse) or "stopped"
    (the run itself did not end well: a timeout, say; `result.status` says which)."""

    result: Result
    kind: Kind
    value: Any = None
    error_type: str = ""
    message: str = ""
    traceback: str = ""


class Notebook:
    """Cells in one session. The session is the notebook's: `close()` ends it."""

    def __init__(self, session: Session) -> None:
        self.session = session
        setup = session.run(_DRIVER)
        if not setup.ok:
            session.close()
            raise SessionError(f"the cell driver did not start: {setup.stderr}", setup)

    def run(self, code: str, variables: Mapping[str, Any] | None = None) -> Cell:
        """Run one cell. `variables` (JSON values) are set as globals first. Raises
        `SessionError` when the session is gone (its state with it)."""
        try:
            injected = json.dumps(dict(variables or {}))
        except (TypeError, ValueError) as exc:
            raise PolicyError("variables", f"must be JSON values: {exc}") from exc
        call = f"__stockade_cell__({code!r}, __import__('json').loads({injected!r}), {OUTCOME!r})"
        result = self.session.run(call)
        if not result.ok:
            return Cell(result, "stopped")
        try:
            raw = self.session.read_file(OUTCOME)
        except PolicyError as exc:  # the cell removed or replaced its outcome file
            return Cell(result, "error", None, "OutcomeError", f"no cell outcome: {exc}")
        return _outcome(result, raw)

    def close(self) -> None:
        self.session.close()


def _outcome(result: Result, raw: bytes) -> Cell:
    try:
        said = json.loads(raw)
        kind = said["kind"]
        if kind not in ("value", "error", "syntax"):
            raise ValueError(kind)
        return Cell(
            result,
            kind,
            said.get("value"),
            str(said.get("type", "")),
            str(said.get("message", "")),
            str(said.get("traceback", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:  # the cell overwrote its outcome
        return Cell(result, "error", None, "OutcomeError", f"unreadable cell outcome: {exc}")

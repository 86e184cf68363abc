"""The DSPy interpreter: the protocol as DSPy's own interpreters keep it (state, variables,
SUBMIT, errors), and `ProgramOfThought` driven by DSPy's own `DummyLM`, whose code runs
confined."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("dspy", reason="stockade[dspy] is not installed")

import dspy
from adapters_testkit import SPIN, Probe
from dspy.primitives.code_interpreter import (
    CodeExecutionError,
    CodeInterpreter,
    CodeInterpreterError,
    FinalOutput,
)
from dspy.utils.dummies import DummyLM

from stockade import Sandbox
from stockade.integrations.dspy import StockadeInterpreter


def test_the_protocol_state_variables_submit_and_errors(confined: Sandbox) -> None:
    with StockadeInterpreter(confined) as interpreter:
        assert isinstance(interpreter, CodeInterpreter)
        assert interpreter.execute("x = n * 2", {"n": 21}) is None
        assert interpreter.execute("print(x)") == "42\n"
        assert interpreter.execute("[x, 'a']") == [42, "a"]  # a last expression's value
        assert interpreter.execute("SUBMIT(x)") == FinalOutput({"output": 42})
        interpreter.output_fields = [{"name": "answer"}, {"name": "why"}]
        assert interpreter.execute("SUBMIT(answer=x, why='math')") == FinalOutput(
            {"answer": 42, "why": "math"}
        )
        with pytest.raises(CodeExecutionError, match="TypeError: SUBMIT takes exactly"):
            interpreter.execute("SUBMIT(x)")
        with pytest.raises(SyntaxError):
            interpreter.execute("def (")
        with pytest.raises(CodeExecutionError, match=r"(?s)line 1.*KeyError: 'k'"):
            interpreter.execute("{}['k']")
        with pytest.raises(CodeExecutionError, match="status timeout"):
            interpreter.execute(SPIN)
        assert interpreter.execute("x") == 42  # the limit stopped the call, not the session
        with pytest.raises(CodeInterpreterError, match="free identifiers"):
            interpreter.execute("pass", {"SUBMIT": 1})
    with pytest.raises(CodeInterpreterError, match="shut down"):
        interpreter.execute("x")


def test_a_lost_session_ends_the_interpreter(confined: Sandbox) -> None:
    with StockadeInterpreter(confined) as interpreter:
        with pytest.raises(CodeInterpreterError, match="session ended"):
            interpreter.execute("import os; os._exit(3)")
        with pytest.raises(CodeInterpreterError, match="shut down"):
            interpreter.execute("1")


def test_host_tools_are_refused_until_they_can_be_called(confined: Sandbox) -> None:
    with StockadeInterpreter(confined) as interpreter:
        interpreter.tools["llm_query"] = lambda prompt: prompt
        with pytest.raises(CodeInterpreterError, match="llm_query"):
            interpreter.execute("llm_query(prompt='x')")


def test_program_of_thought_runs_the_models_code_confined(confined: Sandbox, probe: Probe) -> None:
    lm = DummyLM(
        [
            {"reasoning": "look around", "generated_code": f"```python\n{probe.code}\n```"},
            {"reasoning": "it says", "answer": "done"},
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # PoT is deprecated for RLM
        pot = dspy.ProgramOfThought(
            "question -> answer", interpreter_factory=lambda: StockadeInterpreter(confined)
        )
    with dspy.context(lm=lm):
        prediction = pot(question="where am I?")
    assert prediction.answer == "done"
    shown = lm.history[-1]["messages"][-1]["content"]  # the code's output, for the answer
    probe.check(shown.split("[[ ## code_output ## ]]")[1])

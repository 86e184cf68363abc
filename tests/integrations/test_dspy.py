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


def test_tools_are_host_callbacks(confined: Sandbox) -> None:
    asked: list[str] = []

    def llm_query(prompt: str) -> str:
        """A sub-model, on the host."""
        asked.append(prompt)
        return prompt.upper()

    interpreter = StockadeInterpreter(confined)
    interpreter.tools["llm_query"] = llm_query
    try:
        shown = interpreter.execute("import os\nllm_query(prompt=f'uid {os.getuid()}')")
        uid = int(shown.removeprefix("UID "))
        with pytest.raises(CodeInterpreterError, match="free identifiers"):
            interpreter.execute("1", {"llm_query": 1})
        interpreter.tools["other"] = llm_query
        with pytest.raises(CodeInterpreterError, match="tools changed after start"):
            interpreter.execute("1")
    finally:
        interpreter.shutdown()
    assert asked == [f"uid {uid}"] and uid != 0  # asked on the host, from the sandbox


def test_rlm_calls_its_sub_model_from_the_sandbox(confined: Sandbox) -> None:
    code = "import os\nanswer = llm_query(prompt=f'I run as uid {os.getuid()}')\nSUBMIT(answer)"
    lm = DummyLM([{"reasoning": "ask", "code": f"```python\n{code}\n```"}])
    sub_lm = DummyLM([{"response": "a sandbox"}])  # llm_query's model, on the host
    rlm = dspy.RLM(
        "question -> answer",
        max_iters=2,
        sub_lm=sub_lm,
        interpreter_factory=lambda: StockadeInterpreter(confined),
    )
    with dspy.context(lm=lm):
        prediction = rlm(question="who runs you?")
    [prompt] = [call["prompt"] for call in sub_lm.history]
    assert prompt.startswith("I run as uid ") and prompt != "I run as uid 0"
    assert "a sandbox" in prediction.answer


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

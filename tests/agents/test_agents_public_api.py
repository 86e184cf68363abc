"""The public surface of `agents` is pinned, and `agents/` uses only sandbox's public API.

(Named test_agents_public_api.py, not test_public_api.py: without __init__.py files, pytest
imports test modules by basename, so a second test_public_api.py elsewhere would clash.)
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import stockade
import stockade.agents.errors
from stockade import agents

AGENTS_DIR = Path(agents.__file__).parent

EXPECTED = [
    "AgentError",
    "AgentMemory",
    "ChatAgent",
    "ChatResult",
    "ChatState",
    "CodeBlock",
    "CodeExecutionAgent",
    "ConfigError",
    "ContentBlockedError",
    "ContentFilter",
    "Context",
    "Counters",
    "ExecutionResult",
    "Executor",
    "GroupChat",
    "Memory",
    "Message",
    "MessageValidationError",
    "ModelAuthError",
    "ModelClient",
    "ModelError",
    "ModelResponse",
    "ModelResponseError",
    "ModelUnavailableError",
    "OpenAIModel",
    "PendingHandoff",
    "RoutingMode",
    "Runtime",
    "ScriptExhaustedError",
    "ScriptedModel",
    "StateError",
    "TerminationReason",
    "TextMessage",
    "Tool",
    "ToolCall",
    "ToolDefinitionError",
    "Trace",
    "UnknownAgentError",
    "Usage",
    "tool",
]


def test_all_is_pinned() -> None:
    assert agents.__all__ == EXPECTED


def test_every_exported_name_exists_and_is_public() -> None:
    for name in agents.__all__:
        assert hasattr(agents, name), name
    public = {n for n in vars(agents) if not n.startswith("_") and n not in agents.__all__}
    submodules = {p.stem for p in AGENTS_DIR.glob("*.py")} | {"trace"}
    assert public <= submodules, f"exported but not in __all__: {public - submodules}"


def test_every_error_has_one_root_and_is_in_the_documented_tree() -> None:
    doc = agents.errors.__doc__ or ""
    for name, obj in vars(agents.errors).items():
        if (
            inspect.isclass(obj)
            and issubclass(obj, Exception)
            and obj.__module__ == "stockade.agents.errors"
        ):
            assert issubclass(obj, agents.AgentError), name
            assert name in doc, f"{name} is missing from the tree in agents/errors.py"
            assert name in agents.__all__, name


def _sandbox_all() -> set[str]:
    return set(stockade.__all__)


def _core(module: str) -> bool:
    # The core is `stockade` and its subpackages, but not the agent layer itself.
    return module.partition(".")[0] == "stockade" and not module.startswith("stockade.agents")


def _sandbox_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _core(alias.name):
                    found.append((node.lineno, alias.name, []))
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            if _core(module):
                found.append((node.lineno, module, [a.name for a in node.names]))
    return found


def test_agents_import_only_sandbox_public_names() -> None:
    allowed = _sandbox_all()
    problems = []
    for path in sorted(AGENTS_DIR.rglob("*.py")):
        for line, module, names in _sandbox_imports(path):
            where = f"{path.relative_to(AGENTS_DIR.parent)}:{line}"
            if module != "stockade" or not names:
                problems.append(f"{where}: use `from stockade import <name>`, not {module!r}")
            hidden = [n for n in names if n not in allowed]
            problems += [f"{where}: stockade.{n} is not in stockade.__all__" for n in hidden]
    assert not problems, "\n".join(problems)


def test_the_import_check_catches_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import stockade.spawn.child\nfrom stockade.spawn import running\n"
        "from stockade import X\nfrom stockade.agents import Y\n"
    )
    assert [(m, n) for _, m, n in _sandbox_imports(bad)] == [
        ("stockade.spawn.child", []),
        ("stockade.spawn", ["running"]),
        ("stockade", ["X"]),
    ]

"""The public surface of `stockade.agents` is pinned, and the agent layer uses only the
core's public API (`stockade.__all__`).

(Named test_agents_public_api.py, not test_public_api.py: without __init__.py files, pytest
imports test modules by basename, so a second test_public_api.py elsewhere would clash.)
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path

import stockade
import stockade.agents
import stockade.agents.errors

AGENTS_DIR = Path(stockade.agents.__file__).parent

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
    "SandboxSetupError",
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
    assert stockade.agents.__all__ == EXPECTED


def test_every_exported_name_exists_and_is_public() -> None:
    agents = stockade.agents
    for name in agents.__all__:
        assert hasattr(agents, name), name
    public = {n for n in vars(agents) if not n.startswith("_") and n not in agents.__all__}
    packages = {p.name for p in AGENTS_DIR.iterdir() if (p / "__init__.py").exists()}
    submodules = {p.stem for p in AGENTS_DIR.glob("*.py")} | packages
    assert public <= submodules, f"exported but not in __all__: {public - submodules}"


def test_every_error_has_one_root_and_is_in_the_documented_tree() -> None:
    errors = stockade.agents.errors
    doc = errors.__doc__ or ""
    for name, obj in vars(errors).items():
        if (
            inspect.isclass(obj)
            and issubclass(obj, Exception)
            and obj.__module__ == errors.__name__
        ):
            assert issubclass(obj, stockade.agents.AgentError), name
            assert name in doc, f"{name} is missing from the tree in agents/errors.py"
            assert name in stockade.agents.__all__, name


def _imports(path: Path, package: str) -> list[tuple[int, str, list[str]]]:
    """Every import in `path`, a module of `package`, with relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            found.append((node.lineno, module, [a.name for a in node.names]))
    return found


def test_the_agent_module_does_not_import_the_runtime() -> None:
    """`ChatAgent` works through the `Host` protocol: importing `Runtime` would bring back the
    agent <-> runtime circle, and with it lone agents owned by hidden runtimes."""
    imported = set()
    # (That the layer imports only the core's public names is tests/unit/test_layers.py's.)
    for _, module, names in _imports(AGENTS_DIR / "agent.py", "stockade.agents"):
        imported |= {module, *(f"{module}.{name}" for name in names)}
    assert "stockade.agents.runtime.runtime" not in imported
    assert "stockade.agents.runtime.context" in imported  # the check reads what it should

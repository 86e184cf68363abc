"""Imports run one way: each floor of the package imports only itself, the floors nested in
it, and the floors (or single modules) listed for it; docs/architecture.md draws them. A
module's floor is the longest name below that its name starts with. Imports under
`if TYPE_CHECKING:` are not counted: they never run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import stockade
import stockade.agents

BASE = {"stockade.errors"}
FLOORS: dict[str, set[str]] = {
    "stockade.errors": set(),
    "stockade.result": set(),
    "stockade.disk_cache": BASE,
    "stockade.policies": set(),
    "stockade.environments": BASE | {"stockade.disk_cache"},
    "stockade.kernel": BASE | {"stockade.disk_cache"},
    "stockade.net.allowlist": BASE,
    "stockade.net": BASE | {"stockade.kernel", "stockade.net.allowlist"},
    "stockade.policy": BASE
    | {
        "stockade",
        "stockade.disk_cache",
        "stockade.environments.store",
        "stockade.kernel",
        "stockade.net.allowlist",
    },
    "stockade.spawn": BASE
    | {"stockade.environments", "stockade.kernel", "stockade.net", "stockade.result"},
    "stockade.spawn.child": BASE
    | {"stockade.kernel", "stockade.spawn.call", "stockade.spawn.collect", "stockade.spawn.plan"},
    "stockade.telemetry": BASE | {"stockade"},  # __version__; OpenTelemetry itself lazily
    "stockade.callbacks": BASE | {"stockade.result", "stockade.telemetry"},
    "stockade.callbacks.guest": set(),  # shipped into the sandbox as source: stdlib only
    "stockade.warm": BASE
    | {
        "stockade.callbacks",
        "stockade.kernel",
        "stockade.result",
        "stockade.spawn",
        "stockade.telemetry",
    },
    "stockade.warm.guest": set(),  # shipped into the sandbox as source: stdlib only
    "stockade.batch": BASE | {"stockade.result", "stockade.spawn.cancel"},
    "stockade.workspace": BASE
    | {
        "stockade.kernel",
        "stockade.result",
        "stockade.spawn",
        "stockade.telemetry",
        "stockade.warm",
    },
    "stockade.workspace.guest": set(),  # shipped into the sandbox as source: stdlib only
    "stockade.runner": BASE
    | {
        "stockade.batch",
        "stockade.callbacks",
        "stockade.result",
        "stockade.spawn",
        "stockade.warm",
        "stockade.policy",
        "stockade.telemetry",
        "stockade.workspace",
    },
    "stockade.batch.command": BASE | {"stockade.batch", "stockade.ray", "stockade.runner"},
    "stockade.ray": BASE
    | {"stockade.batch", "stockade.policy", "stockade.result", "stockade.runner"},
    "stockade.doctor": BASE | {"stockade.kernel", "stockade.net"},
    "stockade.cli": BASE  # and `stockade` for __version__, as policy does
    | {
        "stockade",
        "stockade.batch.command",
        "stockade.doctor",
        "stockade.environments",
        "stockade.mcp",
        "stockade.policy",
        "stockade.runner",
    },
    "stockade.__main__": {"stockade.cli"},
    "stockade": set(),  # the facade's names are imported lazily, by name
    "stockade.agents": {"stockade"},  # and only names in stockade.__all__
    "stockade.mcp": {"stockade"},  # as the agents: a consumer of stockade.__all__
    "stockade.agents.execution.guest": set(),  # run inside the sandbox: stdlib only
    "stockade.integrations": {"stockade"},  # the framework adapters: stockade.__all__ only
}


CONSUMERS = ("stockade.agents", "stockade.mcp", "stockade.integrations")  # the public API alone
DYNAMIC = {"importlib.import_module", "import_module", "__import__"}


def floor(module: str) -> str:
    found = max((f for f in FLOORS if module == f or module.startswith(f + ".")), key=len)
    # "stockade" is the package's __init__ alone: a new module of the core needs a floor.
    assert found != "stockade" or module == "stockade", f"{module} has no floor in FLOORS"
    return found


def allowed(mine: str, target: str) -> bool:
    def covers(name: str) -> bool:  # "stockade" is the package's own __init__ only
        return target == name or (name != "stockade" and target.startswith(name + "."))

    nested = mine != "stockade" and floor(target).startswith(mine + ".")
    return covers(mine) or nested or any(map(covers, FLOORS[mine]))


def modules() -> dict[str, Path]:
    found = {}
    for package in (stockade, stockade.agents):
        root = Path(package.__file__).parent
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join((package.__name__, *parts)).removesuffix(".__init__")
            found.setdefault(name, path)
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[int, str, str]]:
    """(line, target module, imported name) for each import that runs, also those spelled
    `importlib.import_module("stockade....")`."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for part in node.body
        for inner in ast.walk(part)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Call) and ast.unparse(node.func) in DYNAMIC and node.args:
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                found.append((node.lineno, name.value, name.value.rpartition(".")[2]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in known else base, alias.name))
    return [(line, target, n) for line, target, n in found if target.startswith("stockade")]


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_run_one_way(name: str) -> None:
    known = modules()
    mine, public = floor(name), set(stockade.__all__)
    problems = []
    for line, target, imported in imports(name, known[name], known):
        if not allowed(mine, target):
            problems.append(f"line {line}: {mine} may not import {target}")
        elif mine in CONSUMERS and target == "stockade" and imported not in public:
            problems.append(f"line {line}: {mine} uses stockade.__all__ only: {imported}")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\nfrom stockade.warm import pool\n"
        "if TYPE_CHECKING:\n    from stockade.runner import Sandbox\n"
    )
    known = {"stockade.warm.pool": bad}
    assert imports("stockade.kernel.bad", bad, known) == [(2, "stockade.warm.pool", "pool")]
    assert not allowed("stockade.kernel", "stockade.warm.pool")
    assert not allowed("stockade.agents", "stockade.spawn.running")
    assert not allowed("stockade.spawn.child", "stockade.spawn.supervisor")
    assert not allowed("stockade.net.allowlist", "stockade.net.namespace")
    assert allowed("stockade.spawn", "stockade.spawn.child")  # a floor's own nested floor
    assert not allowed("stockade", "stockade.spawn.child")  # the facade's names are lazy
    assert not allowed("stockade.warm.guest", "stockade.spawn.running")
    with pytest.raises(AssertionError, match="no floor"):
        floor("stockade.newcomer")
    dynamic = tmp_path / "dynamic.py"
    dynamic.write_text("import importlib\nimportlib.import_module('stockade.runner')\n")
    assert imports("stockade.agents.x", dynamic, {}) == [(2, "stockade.runner", "runner")]
    relative = tmp_path / "relative.py"
    relative.write_text("from ... import runner\nfrom ..agent import ChatAgent\n")
    known = {"stockade.runner": relative, "stockade.agents.agent": relative}
    assert imports("stockade.agents.chat.group", relative, known) == [
        (1, "stockade.runner", "runner"),
        (2, "stockade.agents.agent", "ChatAgent"),
    ]

"""Stockade: a hardened process sandbox for untrusted code.

    from stockade import Sandbox, Policy
    box = Sandbox(Policy.load("default").override(timeout=5, memory="256M"))
    result = box.run(["python3", "-c", "print(1)"])

Names are imported on first use, so `import stockade` (and the `sandbox` command) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it from here

__all__ = [
    "BuildError",
    "Command",
    "HostTool",
    "Job",
    "JobResult",
    "Policy",
    "PolicyError",
    "Result",
    "Running",
    "Sandbox",
    "SandboxError",
    "Session",
    "SessionError",
    "SetupError",
    "Status",
    "ToolCall",
    "UnsupportedError",
    "Workspace",
    "WorkspaceError",
    "WorkspaceFileError",
]

_HOMES = {
    "BuildError": "errors",
    "Command": "workspace.command",
    "HostTool": "callbacks.tools",
    "Job": "batch.jobs",
    "JobResult": "batch.jobs",
    "Policy": "policy.model",
    "PolicyError": "errors",
    "Result": "result",
    "Running": "spawn.running",
    "Sandbox": "runner",
    "SandboxError": "errors",
    "Session": "warm.session",
    "SessionError": "errors",
    "SetupError": "errors",
    "Status": "result",
    "ToolCall": "result",
    "UnsupportedError": "errors",
    "Workspace": "workspace.workspace",
    "WorkspaceError": "errors",
    "WorkspaceFileError": "errors",
}

if TYPE_CHECKING:
    from stockade.batch.jobs import Job, JobResult
    from stockade.callbacks.tools import HostTool
    from stockade.errors import (
        BuildError,
        PolicyError,
        SandboxError,
        SessionError,
        SetupError,
        UnsupportedError,
        WorkspaceError,
        WorkspaceFileError,
    )
    from stockade.policy.model import Policy
    from stockade.result import Result, Status, ToolCall
    from stockade.runner import Sandbox
    from stockade.spawn.running import Running
    from stockade.warm.session import Session
    from stockade.workspace.command import Command
    from stockade.workspace.workspace import Workspace


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'stockade' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

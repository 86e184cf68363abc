"""The records on a run's path stay cheap to create (spawn/plan.py says why): NamedTuples
whose annotations are evaluated types, never strings that `typing` compiles into ForwardRefs."""

from __future__ import annotations

import importlib
import inspect
from typing import ForwardRef

import pytest

RUN_PATH = (
    "spawn.call",
    "kernel.cgroups.base",
    "spawn.server",
    "kernel.mounts",
    "net.allowlist",
    "spawn.plan",
    "result",
    "spawn.supervisor",
)


def _records(module_name: str) -> list[type]:
    module = importlib.import_module(f"stockade.{module_name}")
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and value.__module__ == module.__name__
        and issubclass(value, tuple)
        and hasattr(value, "_fields")
    ]


@pytest.mark.parametrize("module_name", RUN_PATH)
def test_run_path_records_are_namedtuples_with_evaluated_annotations(module_name: str) -> None:
    records = _records(module_name)
    assert records, f"stockade.{module_name} defines no NamedTuple"
    for record in records:
        compiled = [
            name
            for name, kind in record.__annotations__.items()
            if isinstance(kind, str | ForwardRef)
        ]
        assert not compiled, f"{record.__qualname__}: annotations left as strings: {compiled}"

"""examples/data_analyst.py: the model's pandas + matplotlib code runs in the sandbox, in an
environment with those packages, and its chart comes back as a real PNG.

The environment is built from the package registry the first time (about half a minute)
into Stockade's content-addressed cache, which keeps it across tests and test runs; the
runs themselves have no network.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents_testkit import example_module

from stockade import Sandbox, Status

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data_analyst.py"
PNG = b"\x89PNG\r\n\x1a\n"
CHECK_THE_CHART = """
with open("chart.png", "rb") as chart:
    data = chart.read()
print(data[:8] == b"\\x89PNG\\r\\n\\x1a\\n", len(data))
"""


@pytest.fixture(scope="module")
def analyst() -> Iterator[Any]:
    with example_module(EXAMPLE, "data_analyst_example") as module:
        yield module


def test_the_analysts_code_draws_its_chart_in_the_environment(analyst: Any) -> None:
    code = analyst.CODE.split("```python\n", 1)[1].rsplit("```", 1)[0]
    with Sandbox(analyst.policy(), prefork=False) as box:  # the first use builds it
        result = box.run_code(code + CHECK_THE_CHART, files={"sales.csv": analyst.sales_csv()})
    assert result.status is Status.OK, result.stderr
    assert "south grew most (+98%)" in result.stdout
    verdict, size = result.stdout.split()[-2:]
    assert verdict == "True" and int(size) > 10_000


def test_the_example_saves_the_chart(analyst: Any, tmp_path: Path) -> None:
    chart = asyncio.run(analyst.analyse(tmp_path))
    data = chart.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000

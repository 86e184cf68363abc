"""A data analyst: a model writes pandas + matplotlib code over a CSV, the sandbox runs it in
an environment with those packages, and the chart it draws comes back and is saved.

The model is scripted (offline); put an `OpenAIModel` in its place to use a real one. The
sandbox's policy lists the packages (`[python] requirements`): the first run builds that
environment into Stockade's cache (half a minute, with pip), and every later run finds it
there. The code runs with no network, as an unprivileged user, and the environment is
read-only inside; only the files it was asked for (`*.png`) come back out.

Usage: python examples/data_analyst.py [OUTDIR]    (as root, or see docs/rootless.md)
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
import tempfile
from pathlib import Path

from stockade import Policy
from stockade.agents import ChatAgent, CodeBlock, CodeExecutionAgent, ScriptedModel

PACKAGES = ["pandas", "matplotlib"]
QUESTION = "sales.csv has monthly sales per region. Which region grew most? Draw a chart."
CODE = """\
```python
import matplotlib

matplotlib.use("Agg")  # no display in the sandbox: draw into a file
import matplotlib.pyplot as plt
import pandas as pd

sales = pd.read_csv("sales.csv", parse_dates=["month"])
table = sales.pivot(index="month", columns="region", values="sales")
growth = (table.iloc[-1] / table.iloc[0] - 1).sort_values(ascending=False)
print("growth over the year:")
print(growth.map("{:+.0%}".format).to_string())
ax = table.plot(title="Monthly sales per region", figsize=(8, 4.5), marker="o")
ax.set_xlabel("month")
ax.set_ylabel("sales (EUR)")
plt.tight_layout()
plt.savefig("chart.png", dpi=100)
print(f"{growth.index[0]} grew most ({growth.iloc[0]:+.0%}); the chart is chart.png")
```"""


def sales_csv() -> str:
    """Twelve months of sales for three regions, each growing at its own pace."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["month", "region", "sales"])
    for month in range(1, 13):
        for region, base, step in (("north", 1200, 40), ("south", 900, 95), ("west", 1500, 10)):
            writer.writerow(
                [f"2025-{month:02d}-01", region, base + step * month + 37 * (month % 3)]
            )
    return out.getvalue()


def policy() -> Policy:
    """The default policy, with the analyst's packages and room for pandas to import."""
    return Policy.from_dict(
        {
            "name": "data-analyst",
            "description": "pandas and matplotlib, no network",
            "limits": {"memory": "1G", "pids": 64},
            "python": {"requirements": PACKAGES},
        }
    )


async def analyse(out_dir: Path) -> Path:
    analyst = ChatAgent(
        "analyst",
        "You are a data analyst. Answer with one Python block; save charts as PNG files.",
        model=ScriptedModel([CODE], name="scripted"),
    )
    answer = (await analyst.process_with_tools(QUESTION)).content
    print(f"analyst wrote:\n{answer}\n")
    code = answer.split("```python\n", 1)[1].rsplit("```", 1)[0]
    # The first use of the policy builds its environment; the agent's sandbox then keeps it.
    runner = CodeExecutionAgent("code_runner", timeout=120, policy=policy(), collect=["*.png"])
    try:
        result = await runner.execute(CodeBlock(code=code, files={"sales.csv": sales_csv()}))
    finally:
        runner.close()
    print(f"sandbox: {result.status} in {result.duration:.2f} s\n{result.stdout}")
    if not result.ok:
        raise SystemExit(f"the analysis failed:\n{result.stderr or result.error}")
    chart = out_dir / "chart.png"
    chart.write_bytes(result.artifacts["chart.png"])
    return chart


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = asyncio.run(analyse(out_dir))
    print(f"saved {chart} ({chart.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

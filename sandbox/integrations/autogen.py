"""An AutoGen 0.7 `CodeExecutor` that runs code blocks in Stockade, for `CodeExecutorAgent`
and `PythonCodeExecutionTool` (AutoGen's own executors are a local one that warns it is
unsafe, Docker, Jupyter and Azure).

    from stockade.integrations.autogen import StockadeCodeExecutor
    agent = CodeExecutorAgent("runner", code_executor=StockadeCodeExecutor())

Each block is a fresh sandbox run (`python` in a warm pooled one with `pool=N`); `sh` and
`bash` blocks run in bash or sh. As AutoGen's executors do, blocks run in order and stop at the
first that fails; the output is the runs' text (stdout, stderr, a note when one did not end
well) and the exit code a shell's: the program's own, 124 for a timeout, 137 for memory.
Cancelling the token kills the running block's sandbox. The executor is a component:
`dump_component()` / `load_component()` keep its policy (its TOML), timeout and pool.
"""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

from stockade import Policy, Sandbox

from . import missing
from .report import as_text, exit_code

try:
    from autogen_core import CancellationToken, Component
    from autogen_core.code_executor import CodeBlock, CodeExecutor, CodeResult
    from pydantic import BaseModel
except ImportError as error:
    raise missing(__name__, "autogen", error) from error

LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "sh", "shell": "bash"}


class StockadeCodeExecutorConfig(BaseModel):
    """The executor's configuration: the policy as TOML text, the per-block timeout in
    seconds (the policy's when None), and the number of warm Python sandboxes."""

    policy: str
    timeout: float | None = None
    pool: int = 0


class StockadeCodeExecutor(CodeExecutor, Component[StockadeCodeExecutorConfig]):
    """Code blocks in Stockade sandboxes. `policy` is a `Policy`, a built-in policy's name or
    a TOML file's path. The sandbox is made by `start()` (or the first block) and closed by
    `stop()`."""

    component_config_schema = StockadeCodeExecutorConfig
    component_provider_override = "stockade.integrations.autogen.StockadeCodeExecutor"

    def __init__(
        self,
        policy: Policy | str | Path = "default",
        *,
        timeout: float | None = None,
        pool: int = 0,
    ) -> None:
        self.policy = policy if isinstance(policy, Policy) else Policy.load(policy)
        self.timeout = timeout
        self.pool = pool
        self._sandbox: Sandbox | None = None

    async def execute_code_blocks(
        self, code_blocks: list[CodeBlock], cancellation_token: CancellationToken
    ) -> CodeResult:
        outputs, code = [], 0
        for block in code_blocks:
            language = LANGUAGES.get(block.language.lower())
            if language is None:
                outputs.append(f"unsupported language {block.language!r}: {', '.join(LANGUAGES)}")
                return CodeResult(exit_code=1, output="\n".join(outputs))
            run = asyncio.ensure_future(
                self._box().arun_code(block.code, language, timeout=self.timeout)
            )
            cancellation_token.link_future(run)  # cancelling the future kills the run
            result = await run
            outputs.append(as_text(result))
            code = exit_code(result)
            if code:
                break
        return CodeResult(exit_code=code, output="\n".join(outputs))

    async def start(self) -> None:
        self._box()

    async def stop(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def _box(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(self.policy, pool=self.pool)
        return self._sandbox

    def _to_config(self) -> StockadeCodeExecutorConfig:
        return StockadeCodeExecutorConfig(
            policy=self.policy.to_toml(), timeout=self.timeout, pool=self.pool
        )

    @classmethod
    def _from_config(cls, config: StockadeCodeExecutorConfig) -> StockadeCodeExecutor:
        policy = Policy.from_dict(tomllib.loads(config.policy))
        return cls(policy, timeout=config.timeout, pool=config.pool)

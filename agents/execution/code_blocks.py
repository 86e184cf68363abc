"""The messages of code execution, `CodeBlock` and `ExecutionResult`, and finding code in text.

Code reaches a `CodeExecutionAgent` either typed, as a `CodeBlock`, or as fenced blocks in a
text message (what models write)::

    ```python
    print("hi")
    ```

A fence's first word names the language (`python`/`py`/`python3`, `bash`, `sh`/`shell`); a
fence without one gets the agent's default language. A second word that looks like a file
name (```` ```python solution.py ````) is kept as the block's `filename`.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Literal

from ..messages import Message, TextMessage

LANGUAGES = ("python", "bash", "sh")
ALIASES = {"py": "python", "python3": "python", "shell": "sh"}

ExecutionStatus = Literal["ok", "nonzero_exit", "timeout", "memory_limit", "signaled", "error"]

# As Markdown has them: ``` or ~~~ (or longer), possibly indented (in a list item), closed by
# a line of at least as many of the same character. Matched line by line (possessively): a
# text of many fences that never close costs no more than one pass.
_OPENING = re.compile(r"(?P<indent>[ \t]*)(?P<fence>`{3,}+|~{3,}+)[ \t]*(?P<info>[^`]*)")
_FILENAME = re.compile(r"^[\w.-]+\.\w+$")
_LISTED = 20  # the names of the files a block made that a model is shown


@dataclass
class CodeBlock(Message):
    """Code to run: its language, and text files to put beside it in /workspace."""

    code: str
    language: str = "python"
    files: dict[str, str] = field(default_factory=dict)
    filename: str | None = None


@dataclass
class ExecutionResult(Message):
    """What running a message's code blocks did.

    The blocks run in order and stop at the first that fails; `status`, `exit_code` and
    `signal` are those of the last block run, `stdout` / `stderr` the blocks' output joined
    (at most `max_output_size` bytes each; `*_truncated` says when some was dropped), and
    `duration` the blocks' wall time in seconds. `status` is the sandbox's `Result.status`,
    or `"error"` when nothing could run (no code, an unknown language); `error` says why. A
    run the sandbox could not set up is no result: it raises `SandboxSetupError`.
    `artifacts` are the files the blocks made in /workspace (name -> content; see the
    agent's `collect`), carried as base64 when the message is stored or traced, and shown to
    a model by name and size only.
    """

    status: ExecutionStatus
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    language: str = "python"
    signal: int | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    blocks_run: int = 0
    blocks_total: int = 0
    error: str | None = None
    artifacts: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self, width: int = 2000) -> str:
        """A plain-text account for a model or a person: outcome line, then the output."""
        head = f"status: {self.status}, exit code: {self.exit_code}"
        if self.signal is not None:
            head += f", signal: {self.signal}"
        head += f", {self.blocks_run} of {self.blocks_total} block(s) run in {self.duration:.2f}s"
        parts = [head]
        if self.error:
            parts.append(f"error: {self.error}")
        if self.artifacts:
            # The names are the code's: quoted, so none can pose as a line of this account,
            # and only the first few, so that they cannot outgrow the output's own limits.
            listed = list(self.artifacts.items())
            made = ", ".join(f"{name!r} ({len(data)} bytes)" for name, data in listed[:_LISTED])
            more = f", and {len(listed) - _LISTED} more" if len(listed) > _LISTED else ""
            parts.append(f"files made: {made}{more}")
        for name, text, cut in (
            ("stdout", self.stdout, self.stdout_truncated),
            ("stderr", self.stderr, self.stderr_truncated),
        ):
            if text:
                shown = text if len(text) <= width else text[:width] + "\n[…]"
                parts.append(f"--- {name}{' (truncated)' if cut else ''} ---\n{shown.rstrip()}")
        return "\n".join(parts)


def language_name(tag: str, default: str) -> str:
    """The canonical language for a fence tag (`py` -> `python`); unknown tags come back as
    they are, lower-cased, for the caller to refuse."""
    tag = tag.strip().lower()
    if not tag:
        return default
    return ALIASES.get(tag, tag)


def extract_blocks(message: Message, default_language: str) -> list[CodeBlock]:
    """The code blocks of a message: a `CodeBlock` is one; text yields its fenced blocks."""
    if isinstance(message, CodeBlock):
        return [message]
    if isinstance(message, TextMessage):
        return find_blocks(message.content, default_language)
    return []


def find_blocks(text: str, default_language: str) -> list[CodeBlock]:
    """Every fenced code block in `text`, in order."""
    blocks = []
    opening, body = None, []
    for line in text.replace("\r\n", "\n").split("\n"):
        if opening is None:
            opening = _OPENING.fullmatch(line)
            body = []
        elif _closes(line, opening["fence"]):
            code = "".join(f"{kept}\n" for kept in body)
            blocks.append(_block(opening, code, default_language))
            opening = None
        else:
            body.append(line)
    return blocks  # a fence never closed holds no block: the answer was cut off


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(fence) and stripped == fence[0] * len(stripped)


def _block(opening: re.Match[str], code: str, default_language: str) -> CodeBlock:
    words = opening["info"].split()
    if opening["indent"]:
        code = textwrap.dedent(code)
    language = language_name(words[0] if words else "", default_language)
    filename = next((w for w in words[1:] if _FILENAME.match(w)), None)
    return CodeBlock(code=code, language=language, filename=filename)

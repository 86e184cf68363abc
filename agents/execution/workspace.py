"""A workspace that lasts across the code blocks of one conversation, kept by the agent.

Every sandbox run starts with an empty /workspace that vanishes with it, and the sandbox has
no call to export files. So the agent keeps the workspace itself, as an opaque archive: each
block runs under `guest/workspace_runner.py`, which unpacks the previous archive inside the
sandbox, runs the block, and prints the new archive after a marker line. `prepare` builds that
run and `split` takes the archive back off the block's stdout. The host never unpacks it.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from . import guest


def guest_source(module: str) -> str:
    """The source of a script of the `guest` package, which runs in the sandbox, never here.
    Found as a module: wherever the package is installed, and a moved or renamed one fails
    at import rather than at the first run."""
    spec = find_spec(f"{guest.__name__}.{module}")
    if spec is None or spec.origin is None:
        raise ImportError(f"no guest script {guest.__name__}.{module}")
    # Its file, not its loader's get_source: pytest's assertion rewriting claims test_*.py.
    return Path(spec.origin).read_text(encoding="utf-8")


RUNNER_SOURCE = guest_source("workspace_runner")
ARCHIVE_PATH = ".stockade/workspace.tar.gz"
CONFIG_PATH = ".stockade/run.json"


def output_room(limit: int) -> int:
    """Bytes of stdout an archive of at most `limit` bytes needs: base64 plus the marker."""
    return (limit + 2) // 3 * 4 + 128


@dataclass(frozen=True)
class PersistedRun:
    """What to hand the executor: the runner's source (run as python) and its files."""

    code: str
    files: dict[str, bytes | str]
    marker: str


@dataclass(frozen=True)
class Split:
    """A persisted run's stdout, taken apart."""

    stdout: bytes
    archive: bytes | None
    problem: str | None


def prepare(
    code: str, language: str, files: Mapping[str, str], archive: bytes | None, limit: int
) -> PersistedRun:
    """The run of one block in the workspace `archive` (None: an empty one). `files` are
    written after the archive is unpacked, so a message's files replace older ones."""
    marker = "=== stockade-workspace " + secrets.token_hex(16) + " ==="
    config = {
        "code": code,
        "language": language,
        "files": dict(files),
        "limit": limit,
        "marker": marker,
    }
    run_files: dict[str, bytes | str] = {CONFIG_PATH: json.dumps(config)}
    if archive is not None:
        run_files[ARCHIVE_PATH] = archive
    return PersistedRun(RUNNER_SOURCE, run_files, marker)


def split(stdout: bytes, marker: str, limit: int, truncated: bool = False) -> Split:
    """Separate the block's own output from the archive the runner printed after it.
    `truncated`: the output passed its cap, which may have cut the archive off."""
    tag = b"\n" + marker.encode() + b"\n"
    cut = stdout.rfind(tag)
    if cut < 0 and truncated:
        return Split(
            stdout, None, "the block's output passed its limit, so its workspace was not saved"
        )
    if cut < 0:
        return Split(stdout, None, "the block did not finish, so its workspace was not saved")
    own, tail = stdout[:cut], stdout[cut + len(tag) :].strip()
    if tail.startswith(b"TOO_LARGE "):
        size = tail.split()[1].decode(errors="replace")
        return Split(own, None, f"the workspace was not saved: {size} bytes packed > {limit}")
    try:
        archive = base64.b64decode(tail, validate=True)
    except binascii.Error:
        return Split(own, None, "the workspace was not saved: its archive came back damaged")
    if len(archive) > limit:
        return Split(own, None, f"the workspace was not saved: larger than {limit} bytes")
    return Split(own, archive, None)


def encode(archive: bytes) -> str:
    """An archive as text, to keep in the agent's JSON-ready `state`."""
    return base64.b64encode(archive).decode("ascii")


def decode(text: str) -> bytes:
    return base64.b64decode(text)

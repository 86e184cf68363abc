"""Fuzz target: the policy loader. Any bytes, read as a TOML policy file, must load into a
valid policy or raise PolicyError; a flag override on top likewise. Anything else is a bug.

    python fuzz/fuzz_policy.py -max_total_time=60 fuzz/corpus-policy fuzz/seeds/policy
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

FLAGS = ("timeout", "cpu_time", "memory", "pids", "output_limit", "open_files", "file_size",
         "stack", "workspace_size", "tmp_size", "uid", "gid", "hostname", "allow_net")  # fmt: skip
_SCRATCH: list[int] = []  # one scratch policy file per process, open and already unlinked


def _scratch(document: bytes) -> str:
    """A path that reads as `document`. The file is unlinked as soon as it is made, and read
    through /proc/self/fd: libFuzzer ends the process without Python's atexit, and a named
    file would be left in the temp dir at every run's end."""
    if not _SCRATCH:
        fd, path = tempfile.mkstemp(prefix="fuzz-policy-", suffix=".toml")
        os.unlink(path)
        _SCRATCH.append(fd)
    fd = _SCRATCH[0]
    os.ftruncate(fd, 0)
    os.pwrite(fd, document, 0)
    return f"/proc/self/fd/{fd}"


def _check(policy: object) -> None:
    from stockade import Policy

    assert isinstance(policy, Policy)
    assert 0 < policy.limits.timeout <= 86_400
    assert policy.limits.memory is None or policy.limits.memory >= 4 << 20
    assert (policy.process.uid or 1) >= 1 and (policy.process.gid or 1) >= 1  # None: its own
    assert policy.limits.output >= 0


def TestOneInput(data: bytes) -> None:
    from stockade import Policy, PolicyError

    # The document is the input up to a NUL; after it, "flag=value" lines to override.
    document, _, overrides = data.partition(b"\0")
    try:
        policy = Policy.load(_scratch(document))
    except PolicyError:
        return
    _check(policy)
    flags = {}
    for line in overrides.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition("=")
        if sep and name in FLAGS:
            flags[name] = (value,) if name == "allow_net" else value
    with contextlib.suppress(PolicyError):
        _check(policy.override(**flags))


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        import stockade.policy.model  # noqa: F401
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""Fuzz target: the command line's argument handling. Any argv (the input split on NUL
bytes) must end in a run (stubbed out here), in exit 125 with a `sandbox:` or usage message,
or in argparse's own exit; never in another exception.

    python fuzz/fuzz_cli.py -max_total_time=60 fuzz/corpus-cli fuzz/seeds/cli
"""

from __future__ import annotations

import contextlib
import io
import sys
from unittest import mock

EXCLUDED = {"doctor", "-h", "--help"}  # doctor probes the machine; help is argparse's


def _stub(self: object, argv: object, **options: object) -> object:
    from stockade import Result, Status

    assert argv and all(isinstance(a, str) and "\0" not in a for a in argv)  # type: ignore[attr-defined]
    return Result(Status.OK, 0, None, b"", b"", False, False, 0.0, 0.0, 0)


def TestOneInput(data: bytes) -> None:
    from stockade import Sandbox, cli

    argv = [part.decode("utf-8", "surrogateescape") for part in data.split(b"\0")]
    if argv and argv[0] == "code":
        argv = [a for a in argv if a != "-"] + ["/nonexistent/source.py"]  # never read stdin
    if EXCLUDED & set(argv):
        return
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(Sandbox, "run", _stub),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    if code not in (0, 125):
        raise AssertionError(f"exit {code!r} for {argv!r}: {err.getvalue()}")
    if code == 125 and "Traceback" in err.getvalue():
        raise AssertionError(f"traceback for {argv!r}")


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        import stockade.cli
        import stockade.policy.model  # noqa: F401
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""The Result: status precedence, exit-code mapping, wait statuses, and a lossless trip through
JSON."""

from __future__ import annotations

import functools
import json
import signal

from hypothesis import given
from hypothesis import strategies as st

from stockade import Result, Status
from stockade.result import decide_status, decode_wait_status, describe_end, make_result
from stockade.spawn.capture import Sink
from stockade.warm import host


def _result(**changes: object) -> Result:
    base = dict(
        status=Status.OK,
        exit_code=0,
        signal=None,
        stdout_bytes=b"",
        stderr_bytes=b"",
        stdout_truncated=False,
        stderr_truncated=False,
        wall_time=0.0,
        cpu_time=0.0,
        peak_memory=0,
    )
    return Result(**{**base, **changes})  # type: ignore[arg-type]


def test_precedence() -> None:
    everything = dict(setup_failed=True, timed_out=True, oom_killed=True, signal=9, exit_code=1)
    order = [
        Status.SETUP_FAILED,
        Status.TIMEOUT,
        Status.MEMORY_LIMIT,
        Status.SIGNALED,
        Status.NONZERO_EXIT,
        Status.OK,
    ]
    for expected, drop in zip(
        order, ["setup_failed", "timed_out", "oom_killed", "signal", "exit_code", None], strict=True
    ):
        assert decide_status(**everything) is expected  # type: ignore[arg-type]
        if drop:
            everything[drop] = None if drop in ("signal", "exit_code") else False


def test_sigxcpu_is_a_timeout() -> None:
    assert (
        decide_status(
            setup_failed=False,
            timed_out=False,
            oom_killed=False,
            signal=signal.SIGXCPU,
            exit_code=None,
        )
        is Status.TIMEOUT
    )


def test_make_result_reads_the_sinks_and_decides_the_status() -> None:
    out, err = Sink(4), Sink(4)
    out.add(b"hello")
    err.add(b"!")
    end = functools.partial(
        make_result,
        signal=None,
        timed_out=False,
        oom_killed=False,
        wall_time=1.0,
        cpu_time=0.5,
        peak_memory=7,
    )
    result = end(out, err, exit_code=3)
    assert result == _result(
        status=Status.NONZERO_EXIT,
        exit_code=3,
        stdout_bytes=b"hell",
        stderr_bytes=b"!",
        stdout_truncated=True,
        wall_time=1.0,
        cpu_time=0.5,
        peak_memory=7,
    )
    failed = end(out, err, exit_code=3, setup_failed=True)
    assert failed.status is Status.SETUP_FAILED
    assert failed.exit_code is None  # the program never ran: no exit code of its own


def test_wait_status() -> None:
    assert decode_wait_status(3 << 8) == (3, None)
    assert decode_wait_status(0) == (0, None)
    assert decode_wait_status(signal.SIGSEGV) == (None, signal.SIGSEGV)
    assert describe_end(3, None) == "exit 3"
    assert describe_end(None, 11) == "signal 11"


def test_wait_status_from_inside_is_checked_first() -> None:
    assert host.decode_status(3 << 8) == (3, None)
    for nonsense in (None, True, "0", 1.0, -1, 1 << 16):
        assert host.decode_status(nonsense) == (None, signal.SIGKILL)


def test_exit_status_mapping() -> None:
    assert _result(status=Status.TIMEOUT, exit_code=None, signal=9).exit_status() == 124
    assert _result(status=Status.MEMORY_LIMIT, exit_code=None, signal=9).exit_status() == 137
    assert _result(status=Status.SIGNALED, exit_code=None, signal=11).exit_status() == 139
    assert _result(status=Status.SETUP_FAILED, exit_code=None).exit_status() == 125
    assert _result(status=Status.NONZERO_EXIT, exit_code=3).exit_status() == 3


def test_contract_keys() -> None:
    keys = set(_result().to_dict())
    assert keys >= {
        "status",
        "exit_code",
        "signal",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "wall_time",
        "cpu_time",
        "peak_memory",
        "error",
    }


@given(st.binary(max_size=512), st.binary(max_size=512))
def test_any_output_round_trips_through_json(out: bytes, err: bytes) -> None:
    result = _result(stdout_bytes=out, stderr_bytes=err)
    loaded = json.loads(result.to_json())
    assert loaded["stdout"] == out.decode("utf-8", errors="replace")
    assert loaded["stderr"] == err.decode("utf-8", errors="replace")

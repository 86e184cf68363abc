"""Fuzz target: output capture. Any bytes written by a program on stdout and stderr (in any
chunking, against any output limit) must be kept exactly up to the limit, flagged as
truncated beyond it, fed stdin intact, and survive the trip into the Result's JSON.

Real pipes, no sandbox: `stockade.spawn.capture.pump` is the code that reads a run's output.

    python fuzz/fuzz_capture.py -max_total_time=60 fuzz/corpus-capture fuzz/seeds/capture
"""

from __future__ import annotations

import json
import os
import sys

PIPE_ROOM = 60_000  # what fits in a pipe without a reader (the kernel's default is 64 KiB)


def _pipe_with(data: bytes) -> int:
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    return read_end


def TestOneInput(data: bytes) -> None:
    from stockade import Result, Status
    from stockade.spawn.capture import Sink, pump

    if len(data) < 4:
        return
    limit = int.from_bytes(data[:2], "little") * 8
    cut = data[2] * len(data) // 256
    body = data[4:]
    out, err, feed = body[:cut][:PIPE_ROOM], body[cut:][:PIPE_ROOM], body[: data[3] * 64]
    stdin_r, stdin_w = os.pipe()
    sinks = Sink(limit), Sink(limit)
    try:
        reply = pump(
            stdin=feed,
            stdin_fd=stdin_w,
            stdout_fd=_pipe_with(out),
            stderr_fd=_pipe_with(err),
            reply_fd=_pipe_with(b"report"),
            stdout=sinks[0],
            stderr=sinks[1],
        )
        os.set_blocking(stdin_r, False)
        fed = b""
        try:
            while chunk := os.read(stdin_r, 65536):
                fed += chunk
        except BlockingIOError:
            pass
    finally:
        os.close(stdin_r)
    assert reply == b"report"
    assert fed == feed, (len(fed), len(feed))
    for sink, written in zip(sinks, (out, err), strict=True):
        assert sink.value() == written[:limit]
        assert sink.truncated == (len(written) > limit)
    result = Result(
        Status.OK, 0, None, sinks[0].value(), sinks[1].value(),
        sinks[0].truncated, sinks[1].truncated, 0.0, 0.0, 0,
    )  # fmt: skip
    decoded = json.loads(result.to_json())
    assert decoded["stdout"] == out[:limit].decode("utf-8", "replace")
    assert decoded["stderr"] == err[:limit].decode("utf-8", "replace")


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        import stockade.result
        import stockade.spawn.capture  # noqa: F401
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

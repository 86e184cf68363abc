"""Host tools, inside the sandbox: `from stockade_tools import lookup_account`.

Each tool the host gave the run (`tools=[...]`) is a plain function here, and in the code's
globals. Calling one sends its name and arguments as JSON over the run's tool channel (a unix
stream socket, the run's only way to the host's tools), and waits for the answer: the JSON
result, or an error raised here as `ToolError` (`ToolArgumentError` when the arguments do
not fit the tool's parameters: the tool was not called). Nothing but JSON crosses.

Standard library only: the `stockade` package is not visible inside. The host ships this
file as source: `python3 -c` runs it for a fresh run (`_main`), a pooled or session
interpreter execs it into a module (`_connect`). `callbacks/broker.py` is its other end.

A frame on the channel is a 4-byte big-endian length, then that many bytes of JSON.
"""

import json as _json
import os as _os
import socket as _socket
import struct as _struct
import sys as _sys
import threading as _threading

# Copies of the host's (tests/unit/test_host_tools.py holds them equal).
_HEADER = _struct.Struct("!I")
SPEC_VARIABLE = "STOCKADE_TOOLS"  # the tools' names and descriptions, and the size bound
FD_VARIABLE = "STOCKADE_TOOLS_FD"  # the channel's fd number


class ToolError(Exception):
    """A host tool call failed: the tool raised (its type and message are here), it took
    too long, a limit of the policy refused it, or the channel is closed."""


class ToolArgumentError(ToolError, TypeError):
    """The arguments do not fit the tool's parameters (or are not JSON): it was not called."""


_ERRORS = {"argument": ToolArgumentError}


class _Channel:
    """One request at a time (a lock), matched to its answer by id: an answer to a call
    that an interrupt (a session's timeout) abandoned is skipped."""

    def __init__(self, fd: int, most: int) -> None:
        _os.set_inheritable(fd, False)  # a subprocess gets no channel (it could not use it)
        self._sock = _socket.socket(fileno=fd)
        self._most = most
        self._lock = _threading.Lock()
        self._last = 0
        self._owner = _os.getpid()
        self._broken = ""

    def call(self, name: str, args: tuple, kwargs: dict) -> object:
        if _os.getpid() != self._owner:
            raise ToolError(f"{name}: host tools answer the process they were given to, not a fork")
        with self._lock:
            if self._broken:
                raise ToolError(f"{name}: {self._broken}")
            self._last += 1
            ident = self._last
            request = {"id": ident, "tool": name, "args": list(args), "kwargs": kwargs}
            try:
                data = _json.dumps(request, allow_nan=False, separators=(",", ":")).encode()
            except (TypeError, ValueError) as exc:
                raise ToolArgumentError(f"{name}: the arguments are not JSON: {exc}") from None
            if len(data) > self._most:
                raise ToolError(
                    f"{name}: the call is {len(data)} bytes, over limits.tool_payload "
                    f"({self._most})"
                )
            try:
                self._sock.sendall(_HEADER.pack(len(data)) + data)
                while True:
                    answer = self._receive()
                    if answer.get("id") == ident:
                        break
                    if answer.get("id") is None:  # about the channel itself: it is closing
                        raise ConnectionError(answer.get("error", {}).get("message", ""))
            except (OSError, ValueError) as exc:
                self._broken = f"the tool channel is closed ({exc or 'the run has ended'})"
                raise ToolError(f"{name}: {self._broken}") from None
        error = answer.get("error")
        if error is not None:
            raise _ERRORS.get(error.get("kind"), ToolError)(error.get("message", ""))
        return answer.get("result")

    def _receive(self) -> dict:
        size = _HEADER.unpack(self._exactly(_HEADER.size))[0]
        answer = _json.loads(self._exactly(size))
        if not isinstance(answer, dict):
            raise ValueError("an answer that is not a JSON object")
        return answer

    def _exactly(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = self._sock.recv(min(size, 1 << 20))
            if not chunk:
                raise ConnectionError("the host closed it")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def _stub(channel: _Channel, name: str, doc: str) -> object:
    def tool(*args: object, **kwargs: object) -> object:
        return channel.call(name, args, kwargs)

    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = doc
    tool.__module__ = __name__
    return tool


def _connect() -> dict:
    """Make this module's tool functions from the host's variables (taken out of the
    environment: a subprocess has no channel); returns them by name."""
    spec = _json.loads(_os.environ.pop(SPEC_VARIABLE))
    channel = _Channel(int(_os.environ.pop(FD_VARIABLE)), int(spec["payload"]))
    tools = {item["name"]: _stub(channel, item["name"], item["doc"]) for item in spec["tools"]}
    globals().update(tools)
    globals()["__all__"] = [*tools, "ToolError", "ToolArgumentError"]
    return tools


def _main(path: str = "/workspace/main.py") -> None:
    """A fresh run's `python3 -c`: run `path` as `python3 main.py` would, with the tools in
    its globals; a traceback shows none of our frames."""
    module = type(_sys)("__main__")
    module.__file__ = path
    module.__builtins__ = __builtins__
    module.__dict__.update(_connect())
    _sys.modules["__main__"] = module
    _sys.argv = [_os.path.basename(path)]
    _sys.path[0] = _os.path.dirname(path)
    try:
        with open(path, "rb") as source:
            code = compile(source.read(), path, "exec")
        exec(code, module.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        tb = exc.__traceback__.tb_next  # the first is ours
        _sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        if isinstance(exc, KeyboardInterrupt):  # die of the signal, as CPython does
            import signal

            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _os.kill(_os.getpid(), signal.SIGINT)
        raise SystemExit(1) from None

"""A tiny chat-completions server for tests: real HTTP on 127.0.0.1, scripted answers.

It serves `/v1/chat/completions` (OpenAI and local servers) and
`/openai/deployments/{deployment}/chat/completions?api-version=...` (Azure), as JSON or as
server-sent events, and records every request so tests can check URLs, headers and bodies.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1 << 20
MAX_REQUESTS = 200
PATHS = re.compile(r"^/v1/chat/completions$|^/openai/deployments/([^/]+)/chat/completions$")


@dataclass
class Step:
    status: int = 200
    body: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict[str, Any]


def completion(
    content: str | None = None,
    tool_calls: list[tuple[str, dict[str, Any]]] = (),  # type: ignore[assignment]
    finish_reason: str | None = None,
    usage: tuple[int, int] = (11, 7),
) -> dict[str, Any]:
    calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        for i, (name, args) in enumerate(tool_calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage_chunk(prompt: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "test-model",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        },
    }


def error(status: int, message: str, code: str | None = None) -> Step:
    return Step(status, {"error": {"message": message, "type": "test", "code": code}})


class FakeOpenAI:
    """The server and its script; `url` is `http://127.0.0.1:PORT`."""

    def __init__(self) -> None:
        self.script: deque[Step] = deque()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, *steps: Step | dict[str, Any]) -> None:
        for step in steps:
            self.script.append(step if isinstance(step, Step) else Step(body=step))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, request: Request) -> Step:
        with self._lock:
            self.requests.append(request)
            if len(self.requests) > MAX_REQUESTS or not self.script:
                return error(500, "the test server has no scripted answer left")
            return self.script.popleft()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = Request(parts.path, parse_qs(parts.query), headers, body)
                if not PATHS.match(parts.path):
                    self._json(error(404, f"no route {parts.path}"))
                    return
                step = fake._next(request)
                time.sleep(step.delay)
                try:
                    if step.chunks is not None:
                        self._sse(step.chunks)
                    else:
                        self._json(step)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (the timeout test): expected

            def _json(self, step: Step) -> None:
                data = json.dumps(step.body or {}).encode()
                self.send_response(step.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in step.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, chunks: list[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for item in chunks:
                    self.wfile.write(f"data: {json.dumps(item)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

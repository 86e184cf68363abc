"""The events of a trace: small pydantic models, one JSON line each, told apart by `kind`.

Each event records one thing that happened, with its timing: a message sent, a routing
decision, a model call, a tool call, a sandbox run, a content-filter action, a handoff, an
error, the end of a chat. `SandboxRunEvent` is filled from a `stockade.Result` by duck typing,
so this module does not import the sandbox.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import pydantic


class BaseEvent(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    ts: float = pydantic.Field(default_factory=time.time)
    """When it happened, seconds since the epoch."""
    seq: int = 0
    """Position in the trace, set by `Trace.record`."""


class MessageEvent(BaseEvent):
    """A message was validated and sent; `message` is its JSON form (with `type`)."""

    kind: Literal["message"] = "message"
    message: dict[str, Any]


class RoutingEvent(BaseEvent):
    """Who gets a message, and why: the router's proposal and what was finally chosen."""

    kind: Literal["routing"] = "routing"
    message_id: str
    sender: str
    mode: str
    proposed: list[str]
    targets: list[str]
    overridden_by: str | None = None
    reason: str = ""


class ModelCallEvent(BaseEvent):
    """One model call: the prompt, the response, tokens and latency (seconds)."""

    kind: Literal["model_call"] = "model_call"
    agent: str
    model: str
    messages: list[dict[str, Any]]
    tools: list[str] = []
    content: str | None = None
    tool_calls: list[dict[str, Any]] = []
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    attempts: int = 1
    error: str | None = None


class ToolCallEvent(BaseEvent):
    """One tool call: the raw arguments, the result given back to the model, latency."""

    kind: Literal["tool_call"] = "tool_call"
    agent: str
    tool: str
    call_id: str
    arguments: str
    result: str
    ok: bool
    latency: float = 0.0


class SandboxRunEvent(BaseEvent):
    """One run of code in the sandbox, with the fields of its `Result`."""

    kind: Literal["sandbox_run"] = "sandbox_run"
    agent: str
    language: str
    code: str
    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    wall_time: float = 0.0
    error: str | None = None
    files: dict[str, int] = {}
    """The files the run brought back out of /workspace: name -> size in bytes."""

    @classmethod
    def from_result(cls, agent: str, language: str, code: str, result: Any) -> SandboxRunEvent:
        """Build from anything shaped like `stockade.Result` (status, exit_code, stdout...)."""
        status = getattr(result, "status", "unknown")
        return cls(
            agent=agent,
            language=language,
            code=code,
            status=str(getattr(status, "value", status)),
            exit_code=getattr(result, "exit_code", None),
            stdout=getattr(result, "stdout", ""),
            stderr=getattr(result, "stderr", ""),
            wall_time=getattr(result, "wall_time", 0.0),
            error=getattr(result, "error", None),
            files={name: len(data) for name, data in getattr(result, "files", {}).items()},
        )


class FilterEvent(BaseEvent):
    """The content filter blocked or redacted a model's input or output."""

    kind: Literal["content_filter"] = "content_filter"
    agent: str
    direction: Literal["input", "output"]
    action: Literal["blocked", "redacted"]
    reason: str = ""


class HandoffEvent(BaseEvent):
    """An agent handed the conversation to a human, or a human answered."""

    kind: Literal["handoff"] = "handoff"
    agent: str
    reason: str
    resumed: bool = False


class ErrorEvent(BaseEvent):
    """An agent's handler raised; the chat ends with `error`."""

    kind: Literal["error"] = "error"
    agent: str
    error_type: str
    error: str


class TerminationEvent(BaseEvent):
    """A chat ended: why, in words, and after how many turns."""

    kind: Literal["termination"] = "termination"
    reason: str
    detail: str = ""
    turns: int = 0


Event = Annotated[
    MessageEvent
    | RoutingEvent
    | ModelCallEvent
    | ToolCallEvent
    | SandboxRunEvent
    | FilterEvent
    | HandoffEvent
    | ErrorEvent
    | TerminationEvent,
    pydantic.Field(discriminator="kind"),
]

EventAdapter: pydantic.TypeAdapter[Event] = pydantic.TypeAdapter(Event)

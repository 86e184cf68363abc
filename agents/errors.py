"""The exception tree of the agent layer. This module imports nothing from the package.

    AgentError                    the root: catch this to catch everything the agent layer raises
    ├── ConfigError               the agents, chat, model or tools are set up wrongly; has a hint
    ├── MessageValidationError    a message was refused on send: names the type and the fields
    ├── UnknownAgentError         a message or a routing decision names an agent nobody registered
    ├── ToolDefinitionError       a tool's JSON schema cannot be derived from its type hints
    ├── ContentBlockedError       the content filter (ours or the provider's) blocked a model call
    ├── StateError                a saved state, a trace file or a stored message cannot be read
    ├── SandboxSetupError         the sandbox could not set up a run of the code: this machine
    │                             lacks what the policy asks for, or the run failed in its
    │                             setup; has the sandbox's message and its hint
    └── ModelError                a model call failed
        ├── ModelAuthError        the server refused the credentials (401 / 403)
        ├── ModelUnavailableError rate limits, 5xx, timeouts or connection errors outlasted retries
        ├── ModelResponseError    the server refused the request (other 4xx) or answered nonsense
        └── ScriptExhaustedError  a ScriptedModel was asked for more responses than it holds

What an agent or a tool *did* is not an exception: a tool's error goes back to the model as the
tool's result, and a chat that ends badly ends with a termination reason (`error`, `stalled`,
`loop_detected`, ...) in its `ChatResult`. Only what the layer itself could not do raises.
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent layer raises."""


class ConfigError(AgentError):
    """The agents, the chat, a model client or a tool are set up wrongly."""

    def __init__(self, problem: str, hint: str = "") -> None:
        self.problem = problem
        self.hint = hint
        super().__init__(f"{problem} (hint: {hint})" if hint else problem)


class MessageValidationError(AgentError, ValueError):
    """A message was refused before delivery; `fields` maps each bad field to the reason."""

    def __init__(self, message_type: str, fields: dict[str, str]) -> None:
        self.message_type = message_type
        self.fields = dict(fields)
        self.field = next(iter(self.fields), "")
        details = "; ".join(f"{message_type}.{name}: {why}" for name, why in self.fields.items())
        super().__init__(f"message refused: {details}")


class UnknownAgentError(AgentError, LookupError):
    """A name that is neither a registered agent nor a known outside party."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"no agent named {name!r}; known: {', '.join(self.known) or 'none'}")


class ToolDefinitionError(AgentError, TypeError):
    """A function cannot be turned into a tool (missing or unsupported type hints)."""

    def __init__(self, tool: str, reason: str) -> None:
        self.tool = tool
        self.reason = reason
        super().__init__(f"tool {tool!r}: {reason}")


class ContentBlockedError(AgentError):
    """A content filter blocked a model's input or output."""

    def __init__(self, direction: str, reason: str) -> None:
        self.direction = direction
        self.reason = reason
        super().__init__(f"content filter blocked the model {direction}: {reason}")


class StateError(AgentError):
    """A saved state, a trace file or a stored message cannot be read back."""


class SandboxSetupError(AgentError):
    """The sandbox could not set up a run of an agent's code (the sandbox's `UnsupportedError`
    or `SetupError`, or a run whose status is `setup_failed`). Every later run would fail the
    same way, so a chat ends on it and the review loop stops."""

    def __init__(self, problem: str, hint: str = "") -> None:
        self.problem = problem
        self.hint = hint
        super().__init__(f"{problem} (hint: {hint})" if hint else problem)


class ModelError(AgentError):
    """A model call failed."""


class ModelAuthError(ModelError):
    """The model server refused the credentials (HTTP 401 or 403)."""


class ModelUnavailableError(ModelError):
    """Rate limits, server errors, timeouts or connection errors outlasted the retries."""


class ModelResponseError(ModelError):
    """The model server refused the request or its answer could not be understood."""


class ScriptExhaustedError(ModelError):
    """A ScriptedModel was called more times than it has responses."""

"""Stockade's agent layer: typed messages, agents, a runtime, group chats, traces and memory,
and `CodeExecutionAgent`, which runs the code it is sent in the sandbox.

A consumer of the sandbox that imports only names from `stockade.__all__`. Start with
`ChatAgent`, `GroupChat` and `ScriptedModel`; the README's "The agent layer" shows them.
Patterns built from agents live in `stockade.agents.patterns` (`code_review_loop`);
`python -m stockade.agents.demo` shows it.
"""

from .agent import ChatAgent
from .chat.group import ChatResult, GroupChat, PendingHandoff, TerminationReason
from .chat.routing import ChatState, RoutingMode
from .errors import (
    AgentError,
    ConfigError,
    ContentBlockedError,
    MessageValidationError,
    ModelAuthError,
    ModelError,
    ModelResponseError,
    ModelUnavailableError,
    SandboxSetupError,
    ScriptExhaustedError,
    StateError,
    ToolDefinitionError,
    UnknownAgentError,
)
from .execution.agent import CodeExecutionAgent, Executor
from .execution.code_blocks import CodeBlock, ExecutionResult
from .memory import AgentMemory, Memory
from .messages import Message, TextMessage
from .models.base import ContentFilter, ModelClient, ModelResponse, ToolCall, Usage
from .models.openai import OpenAIModel
from .models.scripted import ScriptedModel
from .runtime.context import Context, Counters
from .runtime.runtime import Runtime
from .tools import Tool, tool
from .trace.log import Trace

__all__ = [
    "AgentError",
    "AgentMemory",
    "ChatAgent",
    "ChatResult",
    "ChatState",
    "CodeBlock",
    "CodeExecutionAgent",
    "ConfigError",
    "ContentBlockedError",
    "ContentFilter",
    "Context",
    "Counters",
    "ExecutionResult",
    "Executor",
    "GroupChat",
    "Memory",
    "Message",
    "MessageValidationError",
    "ModelAuthError",
    "ModelClient",
    "ModelError",
    "ModelResponse",
    "ModelResponseError",
    "ModelUnavailableError",
    "OpenAIModel",
    "PendingHandoff",
    "RoutingMode",
    "Runtime",
    "SandboxSetupError",
    "ScriptExhaustedError",
    "ScriptedModel",
    "StateError",
    "TerminationReason",
    "TextMessage",
    "Tool",
    "ToolCall",
    "ToolDefinitionError",
    "Trace",
    "UnknownAgentError",
    "Usage",
    "tool",
]

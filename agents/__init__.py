"""Stockade's agent layer: typed messages, agents, a runtime, group chats, traces and memory.

A consumer of the sandbox that imports only names from `sandbox.__all__`. Start with
`ChatAgent`, `GroupChat` and `ScriptedModel`; see `agents/README_SECTION.md`.
"""

from agents.agent import ChatAgent, Context
from agents.errors import (
    AgentError,
    ConfigError,
    ContentBlockedError,
    MessageValidationError,
    ModelAuthError,
    ModelError,
    ModelResponseError,
    ModelUnavailableError,
    ScriptExhaustedError,
    StateError,
    ToolDefinitionError,
    UnknownAgentError,
)
from agents.group_chat import ChatResult, GroupChat, PendingHandoff, TerminationReason
from agents.memory import AgentMemory, Memory
from agents.messages import Message, TextMessage
from agents.models import ContentFilter, ModelClient, ModelResponse, ScriptedModel, ToolCall, Usage
from agents.openai_model import OpenAIModel
from agents.routing import ChatState, RoutingMode
from agents.runtime import Counters, Runtime
from agents.tools import Tool, tool
from agents.trace import Trace

__all__ = [
    "AgentError",
    "AgentMemory",
    "ChatAgent",
    "ChatResult",
    "ChatState",
    "ConfigError",
    "ContentBlockedError",
    "ContentFilter",
    "Context",
    "Counters",
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

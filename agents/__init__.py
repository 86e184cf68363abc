"""Stockade's agent layer: typed messages, agents, a runtime, group chats, traces and memory,
and `CodeExecutionAgent`, which runs the code it is sent in the sandbox.

A consumer of the sandbox that imports only names from `sandbox.__all__`. Start with
`ChatAgent`, `GroupChat` and `ScriptedModel`; see `agents/README_SECTION.md`. Patterns built
from agents live in `agents.patterns` (`code_review_loop`); `python -m agents.demo` shows it.
"""

from stockade.agents.agent import ChatAgent, Context
from stockade.agents.code_blocks import CodeBlock, ExecutionResult
from stockade.agents.code_execution import CodeExecutionAgent, Executor
from stockade.agents.errors import (
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
from stockade.agents.group_chat import ChatResult, GroupChat, PendingHandoff, TerminationReason
from stockade.agents.memory import AgentMemory, Memory
from stockade.agents.messages import Message, TextMessage
from stockade.agents.models import (
    ContentFilter,
    ModelClient,
    ModelResponse,
    ScriptedModel,
    ToolCall,
    Usage,
)
from stockade.agents.openai_model import OpenAIModel
from stockade.agents.routing import ChatState, RoutingMode
from stockade.agents.runtime import Counters, Runtime
from stockade.agents.tools import Tool, tool
from stockade.agents.trace import Trace

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

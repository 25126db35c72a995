"""flink-actors agent definition API.

Define a workflow (``class MyWorkflow(Workflow)`` with ``@tool``, ``@model``, ``@mcp_server``
and ``@step`` members) or use the built-in ReAct agent (`AgentWorkflow`); test it with
`LocalRunner` and the models of `actors.testing`; the Flink runtime runs the same definition
through `AgentEngine`.

The model clients and MCP servers are imported on first use, so ``import actors`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from actors.context import RunnerContext
from actors.decorators import context_source, mcp_server, model, step, tool
from actors.engine import AgentEngine, TurnOutcome
from actors.executor import WorkflowExecutor
from actors.messaging import Subscription
from actors.react import AgentWorkflow
from actors.runner import LocalRunner
from actors.state import State
from actors.workflow import Workflow
from protocols.events import (
    AskReply,
    AskTimeout,
    ChatMessage,
    ChatModelEvent,
    ChatModelResponseEvent,
    ErrorEvent,
    Event,
    InputEvent,
    OutputEvent,
    ToolCall,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
)

if TYPE_CHECKING:
    from actors.mcp import MCPServer, MCPServerHTTP, MCPServerStdio
    from actors.models.base import ChatModel
    from actors.models.ollama import OllamaChatModel
    from actors.models.openai import OpenAIChatModel
    from actors.tools import Tool

__all__ = [
    "AgentEngine",
    "AgentWorkflow",
    "AskReply",
    "AskTimeout",
    "ChatMessage",
    "ChatModel",
    "ChatModelEvent",
    "ChatModelResponseEvent",
    "ErrorEvent",
    "Event",
    "InputEvent",
    "LocalRunner",
    "MCPServer",
    "MCPServerHTTP",
    "MCPServerStdio",
    "OllamaChatModel",
    "OpenAIChatModel",
    "OutputEvent",
    "RunnerContext",
    "State",
    "Subscription",
    "Tool",
    "ToolCall",
    "ToolCallEvent",
    "ToolResultEvent",
    "TurnOutcome",
    "Usage",
    "Workflow",
    "WorkflowExecutor",
    "context_source",
    "mcp_server",
    "model",
    "step",
    "tool",
]

_LAZY = {
    "ChatModel": "actors.models.base",
    "MCPServer": "actors.mcp",
    "MCPServerHTTP": "actors.mcp",
    "MCPServerStdio": "actors.mcp",
    "OllamaChatModel": "actors.models.ollama",
    "OpenAIChatModel": "actors.models.openai",
    "Tool": "actors.tools",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

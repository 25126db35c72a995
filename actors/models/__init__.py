"""Chat-model clients: the `ChatModel` interface and its provider implementations."""

from __future__ import annotations

from actors.models.base import ChatModel, ChatResult, ToolSchema
from actors.models.ollama import OllamaChatModel
from actors.models.openai import OpenAIChatModel

__all__ = ["ChatModel", "ChatResult", "OllamaChatModel", "OpenAIChatModel", "ToolSchema"]

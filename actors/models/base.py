"""The chat-model interface every provider client implements."""

from __future__ import annotations

import abc
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from protocols.events import ChatMessage, Usage

__all__ = ["ChatModel", "ChatResult", "ToolSchema"]


class ToolSchema(BaseModel):
    """A tool as a model sees it: name, description and JSON schema of its arguments."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ChatResult(BaseModel):
    """One model answer: the assistant message (maybe with tool calls) and its usage."""

    model_config = ConfigDict(frozen=True)

    message: ChatMessage
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    provider: str = ""


class ChatModel(abc.ABC):
    """A chat model definition: where it is served, plus the agent-side settings
    (system `prompt`, allowed `tools` and `mcp_servers` by name).

    Instances are picklable definitions: clients and connections are created lazily on first
    use, in the process that executes the call (a Ray worker or the local runner), and API keys
    are read from the environment there, never stored in the definition's repr or in state.
    """

    provider: str = "abstract"

    def __init__(
        self,
        *,
        model: str,
        prompt: str | None = None,
        tools: list[str] | None = None,
        mcp_servers: list[str] | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.model = model
        self.prompt = prompt
        self.tools = list(tools or [])
        self.mcp_servers = list(mcp_servers or [])
        self.timeout_s = timeout_s

    @property
    def rate_key(self) -> str:
        """Admission-control bucket of this model: provider and model name."""
        return f"{self.provider}/{self.model}"

    @abc.abstractmethod
    async def chat(
        self, messages: list[ChatMessage], *, tools: list[ToolSchema] | None = None
    ) -> ChatResult:
        """Send the conversation; return the answer. Raises `ModelRetryableError` or
        `ModelNonRetryableError` (protocols.errors) on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The default has none."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

"""How tools are offered to an OpenAI-compatible server and how its tool calls are read back.

`NativeToolStrategy` (the default) uses the Chat Completions ``tools`` parameter and the
``tool_calls`` of the answer, which OpenAI, vLLM (with a tool parser), llama.cpp server and
Ollama's /v1 endpoint all speak. Small local models often tool-call more reliably when the call
is forced into a JSON shape with constrained decoding instead; such a strategy plugs in here by
subclassing `ToolStrategy` and registering a name with `register_tool_strategy`, without
touching the client.

A strategy instance is part of a picklable model definition, so it must itself be picklable
(a plain class with plain attributes).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from typing import Any

from actors.models.base import ToolSchema
from protocols.errors import ConfigError, ModelNonRetryableError
from protocols.events import ChatMessage, ToolCall

__all__ = [
    "NativeToolStrategy",
    "ToolStrategy",
    "register_tool_strategy",
    "resolve_tool_strategy",
    "tool_strategy_names",
]


class ToolStrategy(abc.ABC):
    """Encodes tool schemas into a Chat Completions request and decodes the answer."""

    name: str = "abstract"

    @abc.abstractmethod
    def build_request(self, request: dict[str, Any], tools: list[ToolSchema]) -> dict[str, Any]:
        """Return the request keyword arguments with `tools` offered to the model.

        `request` already holds ``model``, ``messages`` (Chat Completions dicts, tool calls and
        tool results included) and any ``extra_body``; a strategy may rewrite any of them.
        """

    @abc.abstractmethod
    def parse_response(self, message: dict[str, Any]) -> ChatMessage:
        """Turn the raw assistant message (a Chat Completions message dict) into a ChatMessage.

        Raises:
            ModelNonRetryableError: The message cannot be read.
        """


def tool_schema_to_openai(schema: ToolSchema) -> dict[str, Any]:
    """The Chat Completions ``tools`` entry for one tool."""
    function: dict[str, Any] = {"name": schema.name, "parameters": schema.parameters}
    if schema.description:
        function["description"] = schema.description
    return {"type": "function", "function": function}


class NativeToolStrategy(ToolStrategy):
    """The provider's own function calling: ``tools=[...]`` in, ``tool_calls`` out."""

    name = "native"

    def build_request(self, request: dict[str, Any], tools: list[ToolSchema]) -> dict[str, Any]:
        if tools:
            request = {**request, "tools": [tool_schema_to_openai(t) for t in tools]}
        return request

    def parse_response(self, message: dict[str, Any]) -> ChatMessage:
        calls: list[ToolCall] = []
        for index, raw in enumerate(message.get("tool_calls") or []):
            function = raw.get("function") or {}
            name = function.get("name")
            if not isinstance(name, str) or not name:
                raise ModelNonRetryableError(
                    f"tool call #{index} in the model's answer has no function name; "
                    "the server returned a malformed tool call"
                )
            arguments = function.get("arguments")
            if arguments is None:
                arguments = "{}"
            elif not isinstance(arguments, str):  # some servers send an object; keep JSON text
                arguments = json.dumps(arguments)
            calls.append(
                ToolCall(id=raw.get("id") or f"call_{index}", name=name, arguments=arguments)
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            content = str(content)
        return ChatMessage.assistant(content, calls)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))


_REGISTRY: dict[str, Callable[[], ToolStrategy]] = {"native": NativeToolStrategy}


def register_tool_strategy(name: str, factory: Callable[[], ToolStrategy]) -> None:
    """Make `tool_strategy=name` available to `OpenAIChatModel`.

    Raises:
        ConfigError: `name` is already registered to another factory.
    """
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not factory:
        raise ConfigError(
            "tool_strategy", f"{name!r} is already registered", "register under another name"
        )
    _REGISTRY[name] = factory


def tool_strategy_names() -> list[str]:
    """The registered strategy names, sorted."""
    return sorted(_REGISTRY)


def resolve_tool_strategy(strategy: str | ToolStrategy) -> ToolStrategy:
    """A strategy instance for a registered name, or the instance itself.

    Raises:
        ConfigError: Unknown name or wrong type.
    """
    if isinstance(strategy, ToolStrategy):
        return strategy
    if isinstance(strategy, str):
        factory = _REGISTRY.get(strategy)
        if factory is None:
            raise ConfigError(
                "tool_strategy",
                f"unknown strategy {strategy!r}",
                f"use one of {tool_strategy_names()!r} or pass a ToolStrategy instance",
            )
        return factory()
    raise ConfigError(
        "tool_strategy",
        f"expected a name or a ToolStrategy, got {type(strategy).__name__!r}",
        "pass 'native' or a ToolStrategy instance",
    )

"""Pieces shared by the provider clients: message conversion, prices, Retry-After, secrets.

Kept private: the public surface is the `ChatModel` subclasses in this package.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from protocols.events import ChatMessage, Usage

__all__ = [
    "LoopBound",
    "compute_cost",
    "message_to_openai",
    "parse_retry_after",
    "with_system_prompt",
]

T = TypeVar("T")


def with_system_prompt(messages: list[ChatMessage], prompt: str | None) -> list[ChatMessage]:
    """Prepend the model's system `prompt` unless the conversation already starts with one.

    The runtime may put the prompt in itself; checking first keeps it from appearing twice.
    """
    if prompt and not (messages and messages[0].role == "system"):
        return [ChatMessage.system(prompt), *messages]
    return list(messages)


def message_to_openai(message: ChatMessage) -> dict[str, Any]:
    """One `ChatMessage` as a Chat Completions message dict."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id or ""
        if out["content"] is None:
            out["content"] = ""
    if message.name is not None and message.role in ("user", "system", "assistant"):
        out["name"] = message.name
    return out


def arguments_as_object(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as a dict (Ollama wants objects); invalid JSON -> {}."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def compute_cost(
    input_tokens: int,
    output_tokens: int,
    price_per_mtok_in: float | None,
    price_per_mtok_out: float | None,
) -> float | None:
    """USD cost of a call, or None when no price is configured (a missing side counts as 0)."""
    if price_per_mtok_in is None and price_per_mtok_out is None:
        return None
    return (
        input_tokens * (price_per_mtok_in or 0.0) + output_tokens * (price_per_mtok_out or 0.0)
    ) / 1e6


def usage_of(
    input_tokens: int | None,
    output_tokens: int | None,
    price_per_mtok_in: float | None = None,
    price_per_mtok_out: float | None = None,
) -> Usage:
    """A `Usage` from token counts that servers may leave out."""
    tin, tout = int(input_tokens or 0), int(output_tokens or 0)
    return Usage(
        input_tokens=tin,
        output_tokens=tout,
        cost_usd=compute_cost(tin, tout, price_per_mtok_in, price_per_mtok_out),
    )


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``Retry-After`` (seconds or HTTP date), or None."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def env_secret(explicit: str | None, env_var: str) -> str | None:
    """The explicit secret, else the environment variable's value, else None."""
    if explicit:
        return explicit
    value = os.environ.get(env_var)
    return value or None


class LoopBound(Generic[T]):
    """One client object per running event loop.

    httpx-based clients hold connections tied to the loop that opened them; a definition used
    from several loops (tests, the local runner, a Ray actor) gets a fresh client on each.
    Never pickled: the owning definition drops it.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._value: T | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        if self._value is None or self._loop is not loop:
            self._value = self._factory()
            self._loop = loop
        return self._value

    def take(self) -> T | None:
        """Detach and return the current client (for closing), if it belongs to this loop."""
        value, self._value = self._value, None
        try:
            same_loop = self._loop is asyncio.get_running_loop()
        except RuntimeError:
            same_loop = False
        self._loop = None
        return value if same_loop else None

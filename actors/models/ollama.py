"""`OllamaChatModel`: Ollama's native ``/api/chat`` over httpx, non-streaming.

The native API (rather than Ollama's /v1 shim, which `OpenAIChatModel` covers) reports token
counts for every answer (``prompt_eval_count``, ``eval_count``) and takes model ``options``.
Tool-call arguments travel as JSON objects here; they are turned into JSON text so a
`ToolCall` looks the same whichever provider produced it. Ollama gives tool calls no ids, so
they get positional ids (``call_0``, ``call_1``), deterministic on replay.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from actors.models._common import (
    LoopBound,
    arguments_as_object,
    parse_retry_after,
    usage_of,
    with_system_prompt,
)
from actors.models.base import ChatModel, ChatResult, ToolSchema
from actors.models.tool_strategy import tool_schema_to_openai
from protocols.errors import ConfigError, ModelNonRetryableError, ModelRetryableError
from protocols.events import ChatMessage, ToolCall

__all__ = ["OllamaChatModel"]


def _message_to_ollama(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.role == "assistant" and message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": arguments_as_object(c.arguments)}}
            for c in message.tool_calls
        ]
    if message.role == "tool" and message.name:
        out["tool_name"] = message.name
    return out


class OllamaChatModel(ChatModel):
    """A model served by Ollama, called through its native chat API.

    Args:
        host: Ollama's address.
        model: The model tag, e.g. ``"qwen2.5:7b"``.
        prompt: System prompt put first in the conversation when it has none.
        tools: Names of the workflow tools this model may call.
        mcp_servers: Names of the MCP servers whose tools this model may call.
        timeout_s: Limit for one request, in seconds.
        options: Ollama model options (``temperature``, ``num_ctx``, ``seed``...).
        keep_alive: How long Ollama keeps the model loaded (e.g. ``"5m"``); None: its default.
    """

    provider = "ollama"

    def __init__(
        self,
        *,
        host: str = "http://127.0.0.1:11434",
        model: str,
        prompt: str | None = None,
        tools: list[str] | None = None,
        mcp_servers: list[str] | None = None,
        timeout_s: float = 60.0,
        options: dict[str, Any] | None = None,
        keep_alive: str | None = None,
    ) -> None:
        super().__init__(
            model=model, prompt=prompt, tools=tools, mcp_servers=mcp_servers, timeout_s=timeout_s
        )
        if not model:
            raise ConfigError("model", "is empty", "pass the Ollama model tag, e.g. 'qwen2.5:7b'")
        if timeout_s <= 0:
            raise ConfigError("timeout_s", f"must be positive, got {timeout_s!r}", "pass e.g. 60.0")
        if not host.startswith(("http://", "https://")):
            raise ConfigError(
                "host", f"{host!r} has no scheme", "pass e.g. 'http://127.0.0.1:11434'"
            )
        self.host = host.rstrip("/")
        self.options = dict(options or {})
        self.keep_alive = keep_alive
        self._client: LoopBound[httpx.AsyncClient] = LoopBound(self._make_client)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_client", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client = LoopBound(self._make_client)

    def __repr__(self) -> str:
        return f"OllamaChatModel(model={self.model!r}, host={self.host!r})"

    def _make_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.host, timeout=self.timeout_s)

    async def chat(
        self, messages: list[ChatMessage], *, tools: list[ToolSchema] | None = None
    ) -> ChatResult:
        """Send the conversation (with the system prompt first) and return the answer.

        Raises:
            ModelRetryableError: HTTP 429/5xx, timeouts, connection errors.
            ModelNonRetryableError: Other 4xx (an unknown model is 404), a malformed answer.
        """
        conversation = with_system_prompt(messages, self.prompt)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_message_to_ollama(m) for m in conversation],
            "stream": False,
        }
        if tools:
            body["tools"] = [tool_schema_to_openai(t) for t in tools]
        if self.options:
            body["options"] = self.options
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        client = self._client.get()
        try:
            response = await client.post("/api/chat", json=body)
        except httpx.TimeoutException as exc:
            raise ModelRetryableError(
                f"model {self.model!r} timed out after {self.timeout_s}s; "
                "raise timeout_s or check Ollama's load"
            ) from exc
        except httpx.HTTPError as exc:
            raise ModelRetryableError(
                f"model {self.model!r}: could not reach Ollama at {self.host!r} "
                f"({type(exc).__name__}); check that it is running"
            ) from exc
        if response.status_code >= 400:
            raise self._status_error(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise ModelNonRetryableError(
                f"model {self.model!r}: Ollama answered with non-JSON text; check host points "
                "at Ollama"
            ) from exc
        return self._to_result(data)

    def _status_error(self, response: httpx.Response) -> Exception:
        status = response.status_code
        try:
            detail = str(response.json().get("error", response.text))
        except (ValueError, AttributeError):
            detail = response.text[:500]
        retry_after = parse_retry_after(dict(response.headers))
        if status == 429 or status >= 500 or status == 408:
            return ModelRetryableError(
                f"model {self.model!r}: Ollama error (HTTP {status}): {detail}",
                retry_after_s=retry_after,
            )
        fix = "pull the model with `ollama pull`" if status == 404 else "fix the request"
        return ModelNonRetryableError(
            f"model {self.model!r}: Ollama rejected the request (HTTP {status}): {detail}; {fix}"
        )

    def _to_result(self, data: Any) -> ChatResult:
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict):
            raise ModelNonRetryableError(
                f"model {self.model!r}: Ollama's answer has no 'message' object; "
                "check that host points at Ollama's native API"
            )
        calls: list[ToolCall] = []
        for index, raw in enumerate(message.get("tool_calls") or []):
            function = (raw or {}).get("function") or {}
            name = function.get("name")
            if not isinstance(name, str) or not name:
                raise ModelNonRetryableError(
                    f"model {self.model!r}: tool call #{index} has no function name"
                )
            arguments = function.get("arguments", {})
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            calls.append(ToolCall(id=raw.get("id") or f"call_{index}", name=name, arguments=text))
        content = message.get("content")
        if not content and calls:
            content = None  # a pure tool-call turn, as the OpenAI convention has it
        return ChatResult(
            message=ChatMessage.assistant(content, calls),
            usage=usage_of(data.get("prompt_eval_count"), data.get("eval_count")),
            model=str(data.get("model") or self.model),
            provider=self.provider,
        )

    async def aclose(self) -> None:
        """Close this loop's HTTP client, if one was opened."""
        client = self._client.take()
        if client is not None:
            await client.aclose()

"""`OpenAIChatModel`: Chat Completions through the official `openai` SDK.

One client serves OpenAI itself and every server speaking its API: vLLM, llama.cpp server,
Ollama's /v1 endpoint. The definition is a picklable value: the `AsyncOpenAI` client is created
lazily in the process (and event loop) that makes the call, and the API key is read there.

Secrets: an explicit ``api_key`` lives only in this process's memory. It is never in the repr,
never pickled (a pickled definition re-reads ``api_key_env`` where it lands), and never in
state or logs. Retries are off by default (the SDK's too): admission control and retries belong
to the Ray pool, which sees ``ModelRetryableError.retry_after_s``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from actors.models._common import (
    LoopBound,
    env_secret,
    message_to_openai,
    parse_retry_after,
    usage_of,
    with_system_prompt,
)
from actors.models.base import ChatModel, ChatResult, ToolSchema
from actors.models.tool_strategy import ToolStrategy, resolve_tool_strategy
from protocols.errors import ConfigError, ModelError, ModelNonRetryableError, ModelRetryableError
from protocols.events import ChatMessage

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["OpenAIChatModel"]

_LOCAL_PLACEHOLDER_KEY = "sk-no-key-required"


class OpenAIChatModel(ChatModel):
    """A model served behind an OpenAI-compatible Chat Completions endpoint.

    Args:
        model: The served model name, e.g. ``"gpt-4o-mini"`` or a vLLM model id.
        base_url: The API root (``http://127.0.0.1:8000/v1``); None means api.openai.com.
        api_key: The key; by default read from ``api_key_env`` where the call runs. A server
            at a custom ``base_url`` that needs no key gets a placeholder.
        prompt: System prompt put first in the conversation when it has none.
        tools: Names of the workflow tools this model may call.
        mcp_servers: Names of the MCP servers whose tools this model may call.
        timeout_s: Limit for one request, in seconds.
        max_retries: SDK-level retries (0: the caller retries on `ModelRetryableError`).
        price_per_mtok_in: USD per million input tokens, for `Usage.cost_usd`.
        price_per_mtok_out: USD per million output tokens.
        extra_body: Extra JSON fields sent with each request (e.g. vLLM sampling options).
        tool_strategy: How tools are offered: ``"native"`` (the ``tools`` parameter) or a
            registered name / `ToolStrategy` instance (see `actors.models.tool_strategy`).
        api_key_env: The environment variable holding the key.
    """

    provider = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        prompt: str | None = None,
        tools: list[str] | None = None,
        mcp_servers: list[str] | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 0,
        price_per_mtok_in: float | None = None,
        price_per_mtok_out: float | None = None,
        extra_body: dict[str, Any] | None = None,
        tool_strategy: str | ToolStrategy = "native",
        api_key_env: str = "OPENAI_API_KEY",
    ) -> None:
        super().__init__(
            model=model, prompt=prompt, tools=tools, mcp_servers=mcp_servers, timeout_s=timeout_s
        )
        if not model:
            raise ConfigError("model", "is empty", "pass the served model name, e.g. 'gpt-4o-mini'")
        if timeout_s <= 0:
            raise ConfigError("timeout_s", f"must be positive, got {timeout_s!r}", "pass e.g. 60.0")
        if max_retries < 0:
            raise ConfigError("max_retries", f"must be >= 0, got {max_retries!r}", "pass 0 or more")
        self.base_url = base_url.rstrip("/") if base_url else None
        self.max_retries = max_retries
        self.price_per_mtok_in = price_per_mtok_in
        self.price_per_mtok_out = price_per_mtok_out
        self.extra_body = dict(extra_body or {})
        self.tool_strategy = resolve_tool_strategy(tool_strategy)
        self.api_key_env = api_key_env
        self._api_key = api_key
        self._client: LoopBound[AsyncOpenAI] = LoopBound(self._make_client)

    # -- definition as a value -------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_api_key"] = None  # never travels: re-read from api_key_env where it lands
        state.pop("_client", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client = LoopBound(self._make_client)

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"OpenAIChatModel(model={self.model!r}{where})"

    # -- calls -----------------------------------------------------------------------------

    def _resolve_api_key(self) -> str:
        key = env_secret(self._api_key, self.api_key_env)
        if key:
            return key
        if self.base_url is not None:
            return _LOCAL_PLACEHOLDER_KEY
        raise ModelNonRetryableError(
            f"model {self.model!r} has no API key; set the {self.api_key_env!r} environment "
            "variable where the call runs, or pass base_url=... for a local server"
        )

    def _make_client(self) -> AsyncOpenAI:
        from openai import AsyncOpenAI

        return AsyncOpenAI(
            api_key=self._resolve_api_key(),
            base_url=self.base_url,
            timeout=self.timeout_s,
            max_retries=self.max_retries,
        )

    async def chat(
        self, messages: list[ChatMessage], *, tools: list[ToolSchema] | None = None
    ) -> ChatResult:
        """Send the conversation (with the system prompt first) and return the answer.

        Raises:
            ModelRetryableError: HTTP 429 (with ``retry_after_s``), 5xx, timeouts, connection
                errors.
            ModelNonRetryableError: Other 4xx, a malformed answer, a missing key.
        """
        import openai

        conversation = with_system_prompt(messages, self.prompt)
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [message_to_openai(m) for m in conversation],
        }
        if self.extra_body:
            request["extra_body"] = dict(self.extra_body)
        request = self.tool_strategy.build_request(request, list(tools or []))
        client = self._client.get()
        # The SDK's timeout bounds each phase (connect, read...); this bounds the whole call.
        overall_s = self.timeout_s * (self.max_retries + 1) + 10.0 * self.max_retries + 1.0
        try:
            async with asyncio.timeout(overall_s):
                response = await client.chat.completions.create(**request)
        except TimeoutError as exc:
            raise ModelRetryableError(
                f"model {self.model!r} timed out after {overall_s:.1f}s; "
                "raise timeout_s or check the server's load"
            ) from exc
        except openai.OpenAIError as exc:
            raise _map_openai_error(exc, self.model, self.timeout_s) from exc
        return self._to_result(response)

    def _to_result(self, response: Any) -> ChatResult:
        dump = getattr(response, "model_dump", None)
        if dump is None:
            raise ModelNonRetryableError(
                f"model {self.model!r}: the server's answer is not a chat completion "
                f"({type(response).__name__!r}); check base_url points at a /v1 API root"
            )
        data = dump()
        choices = data.get("choices") or []
        if not choices or not isinstance(choices[0], dict) or not choices[0].get("message"):
            raise ModelNonRetryableError(
                f"model {self.model!r}: the server's answer has no choices[0].message; "
                "check that the server speaks the Chat Completions API"
            )
        message = self.tool_strategy.parse_response(choices[0]["message"])
        usage = data.get("usage") or {}
        return ChatResult(
            message=message,
            usage=usage_of(
                usage.get("prompt_tokens"),
                usage.get("completion_tokens"),
                self.price_per_mtok_in,
                self.price_per_mtok_out,
            ),
            model=str(data.get("model") or self.model),
            provider=self.provider,
        )

    async def aclose(self) -> None:
        """Close this loop's HTTP client, if one was opened."""
        client = self._client.take()
        if client is not None:
            await client.close()


def _map_openai_error(exc: Exception, model: str, timeout_s: float) -> ModelError:
    """The typed error for an `openai` SDK exception (message never includes secrets)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return ModelRetryableError(
            f"model {model!r} timed out after {timeout_s}s; raise timeout_s or check the server"
        )
    if isinstance(exc, openai.APIConnectionError):
        return ModelRetryableError(
            f"model {model!r}: could not reach the server ({exc.message}); check base_url "
            "and that the server is up"
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = parse_retry_after(dict(exc.response.headers))
        detail = _error_detail(exc)
        if status == 429:
            return ModelRetryableError(
                f"model {model!r} is rate limited (HTTP 429): {detail}", retry_after_s=retry_after
            )
        if status >= 500 or status == 408:
            return ModelRetryableError(
                f"model {model!r}: server error (HTTP {status}): {detail}",
                retry_after_s=retry_after,
            )
        return ModelNonRetryableError(
            f"model {model!r} rejected the request (HTTP {status}): {detail}; "
            "fix the request (model name, messages, tool schemas) or the credentials"
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return ModelNonRetryableError(
            f"model {model!r}: the server's answer does not match the Chat Completions schema"
        )
    return ModelNonRetryableError(f"model {model!r}: {type(exc).__name__}: {exc}")


def _error_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(getattr(exc, "message", exc))

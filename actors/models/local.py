"""`LocalChatModel` (tool calling that small local models follow) and `default_chat_model()`.

Why a subclass of `OpenAIChatModel`: a strategy hook sees one request and one answer, but a
model that answers with a malformed or invalid tool call must be asked again with the error
fed back. `LocalChatModel.chat` runs that bounded loop around the plain client; everything
else (HTTP, errors, usage, pickling) is `OpenAIChatModel`'s.

`default_chat_model()` is the one place that decides which model the demo and the examples
talk to: the endpoint in ``FLINK_ACTORS_MODEL_URL`` (or ``OPENAI_BASE_URL``) when set, so
OpenAI, Ollama or vLLM is one env var away; else the local server `flink-actors up --model`
started, found through the small JSON file it writes (``<state dir>/run/local-model.json``).
That file is the contract between this module and `flink_bridge.local_model`, which imports
its name from here (actors never imports flink_bridge).
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from actors.models.base import ChatResult, ToolSchema
from actors.models.json_tools import (
    JsonToolStrategy,
    SchemaStyle,
    ToolCallFormatError,
    validate_tool_call,
)
from actors.models.openai import OpenAIChatModel
from actors.models.tool_strategy import ToolStrategy
from protocols.errors import ConfigError
from protocols.events import ChatMessage, ToolCall, Usage

__all__ = [
    "LOCAL_MODEL_INFO_FILE",
    "LocalChatModel",
    "ToolMode",
    "default_chat_model",
    "default_state_dir",
    "read_local_model_info",
]

ToolMode = Literal["native", "json", "auto"]

LOCAL_MODEL_INFO_FILE = Path("run") / "local-model.json"
"""Where (under the stack's state dir) the running local model server is described."""

_OPENAI_DEFAULT_MODEL = "gpt-4o-mini"


class LocalChatModel(OpenAIChatModel):
    """An OpenAI-compatible model with a tool-calling mode chosen for it.

    Args:
        model: The served model name.
        base_url: The API root, e.g. ``http://127.0.0.1:8765/v1``.
        tool_mode: ``"native"`` (the ``tools`` parameter), ``"json"`` (schema-constrained
            JSON, for small models) or ``"auto"``: ``json`` for a server on a loopback
            address (a small local model), ``native`` elsewhere (hosted APIs).
        schema_style: How ``json`` mode sends its schema: ``"json_schema"`` (OpenAI, vLLM,
            Ollama) or ``"json_object"`` (llama-cpp-python's server).
        max_attempts: Answers asked for per call when the tool call is malformed or invalid;
            the last failure raises `ModelNonRetryableError`.
        first_turn_tool: ``json`` mode: right after a user message, only a tool call is
            allowed (small models otherwise answer without looking anything up).
        max_tool_rounds: ``json`` mode: after this many tool-call turns since the last user
            message, only a final answer is allowed (small models otherwise repeat calls).
        **kwargs: Passed to `OpenAIChatModel` (prompt, tools, timeout_s, extra_body, ...).
    """

    provider = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        tool_mode: ToolMode = "auto",
        schema_style: SchemaStyle = "json_schema",
        max_attempts: int = 3,
        first_turn_tool: bool = False,
        max_tool_rounds: int | None = None,
        **kwargs: Any,
    ) -> None:
        if tool_mode not in ("native", "json", "auto"):
            raise ConfigError(
                "tool_mode", f"unknown mode {tool_mode!r}", "use 'native', 'json' or 'auto'"
            )
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError("max_attempts", f"must be >= 1, got {max_attempts!r}", "pass 3")
        kwargs.pop("tool_strategy", None)
        strategy: str | ToolStrategy = "native"
        if tool_mode == "json" or (tool_mode == "auto" and _is_loopback(base_url)):
            strategy = JsonToolStrategy(
                schema_style, first_turn_tool=first_turn_tool, max_tool_rounds=max_tool_rounds
            )
        super().__init__(model=model, base_url=base_url, tool_strategy=strategy, **kwargs)
        self.tool_mode = tool_mode
        self.max_attempts = max_attempts

    def __repr__(self) -> str:
        return (
            f"LocalChatModel(model={self.model!r}, base_url={self.base_url!r}, "
            f"tool_strategy={self.tool_strategy.name!r})"
        )

    async def chat(
        self, messages: list[ChatMessage], *, tools: list[ToolSchema] | None = None
    ) -> ChatResult:
        """Ask the model; with tools, retry malformed or invalid tool calls with feedback.

        Raises:
            ModelRetryableError: As `OpenAIChatModel.chat` (429, 5xx, timeouts).
            ModelNonRetryableError: As `OpenAIChatModel.chat`, or a `ToolCallFormatError`
                when every one of `max_attempts` answers broke the tool protocol.
        """
        tool_list = list(tools or [])
        conversation = list(messages)
        usage = Usage()
        last: ToolCallFormatError | None = None
        for _attempt in range(self.max_attempts):
            try:
                result = await super().chat(conversation, tools=tool_list or None)
                usage = usage + result.usage
                message = self._checked(result.message, tool_list, len(messages))
            except ToolCallFormatError as exc:
                usage = usage + getattr(exc, "usage", Usage())
                last = exc
                conversation = [*conversation, *_feedback_turns(exc, tool_list)]
                continue
            return result.model_copy(update={"message": message, "usage": usage})
        assert last is not None
        raise ToolCallFormatError(
            f"model {self.model!r} broke the tool-call protocol on all {self.max_attempts} "
            f"attempts; last problem: {last.feedback}; try a larger model or tool_mode='json'",
            raw=last.raw,
            feedback=last.feedback,
        )

    def _checked(self, message: ChatMessage, tools: list[ToolSchema], turn: int) -> ChatMessage:
        """Validate the tool calls against `tools` and give them ids stable across replays."""
        if not message.tool_calls:
            return message
        raw = message.content or json.dumps([c.model_dump() for c in message.tool_calls])
        renamed: list[ToolCall] = []
        for index, call in enumerate(message.tool_calls):
            validate_tool_call(call, tools, raw=raw)
            call_id = call.id if self.tool_strategy.name == "native" else f"call_{turn}_{index}"
            renamed.append(call.model_copy(update={"id": call_id}))
        return message.model_copy(update={"tool_calls": renamed})

    def _to_result(self, response: Any) -> ChatResult:
        # Keep the tokens of an answer that failed to parse, so retries are accounted.
        try:
            return super()._to_result(response)
        except ToolCallFormatError as exc:
            raw_usage = (response.model_dump().get("usage") or {}) if response else {}
            exc.usage = Usage(  # type: ignore[attr-defined]
                input_tokens=int(raw_usage.get("prompt_tokens") or 0),
                output_tokens=int(raw_usage.get("completion_tokens") or 0),
            )
            raise


def _feedback_turns(exc: ToolCallFormatError, tools: list[ToolSchema]) -> list[ChatMessage]:
    names = ", ".join(repr(t.name) for t in tools) or "none"
    return [
        ChatMessage.assistant(exc.raw or "(empty)"),
        ChatMessage.user(
            f"That reply was invalid: {exc.feedback}. Reply with one JSON object: "
            '{"tool": <name>, "arguments": {...}} with a tool from ' + names + ", "
            'or {"final": "<answer>"}.'
        ),
    ]


def _is_loopback(base_url: str | None) -> bool:
    if not base_url:
        return False
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_state_dir() -> Path:
    """The stack's state dir: ``FLINK_ACTORS_STATE_DIR``, else ``./.flink-actors``."""
    return Path(os.environ.get("FLINK_ACTORS_STATE_DIR") or ".flink-actors").resolve()


def read_local_model_info(state_dir: Path | None = None) -> dict[str, Any] | None:
    """The description `flink-actors up --model` wrote, or None when there is none."""
    path = (state_dir or default_state_dir()) / LOCAL_MODEL_INFO_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, OSError):
        return None
    if not isinstance(data, dict) or not data.get("base_url") or not data.get("model"):
        return None
    return data


def default_chat_model(
    *,
    state_dir: Path | None = None,
    tool_mode: ToolMode = "auto",
    **kwargs: Any,
) -> LocalChatModel:
    """The chat model the demo and the examples use, chosen by one env var.

    1. ``FLINK_ACTORS_MODEL_URL`` or ``OPENAI_BASE_URL`` set: that OpenAI-compatible API
       (OpenAI, Ollama's ``http://127.0.0.1:11434/v1``, vLLM...), model name from
       ``FLINK_ACTORS_MODEL_NAME`` (default ``gpt-4o-mini`` on api.openai.com), key from
       ``OPENAI_API_KEY``. ``FLINK_ACTORS_TOOL_MODE`` overrides `tool_mode`.
    2. Else the local model server started by ``flink-actors up --model`` (SmolLM2-135M):
       ``json`` tool mode with the small-model turn policy (a tool call first, then at most
       one tool round before the final answer) unless `kwargs` say otherwise.

    Raises:
        ConfigError: No endpoint configured and no local model server running, or a remote
            endpoint without a model name.
    """
    mode = os.environ.get("FLINK_ACTORS_TOOL_MODE") or tool_mode
    if mode not in ("native", "json", "auto"):
        raise ConfigError(
            "FLINK_ACTORS_TOOL_MODE", f"unknown mode {mode!r}", "use 'native', 'json' or 'auto'"
        )
    url = os.environ.get("FLINK_ACTORS_MODEL_URL") or os.environ.get("OPENAI_BASE_URL")
    if url:
        name = os.environ.get("FLINK_ACTORS_MODEL_NAME")
        if not name:
            if (urlsplit(url).hostname or "").endswith("openai.com"):
                name = _OPENAI_DEFAULT_MODEL
            else:
                raise ConfigError(
                    "FLINK_ACTORS_MODEL_NAME",
                    f"is not set while the model URL is {url!r}",
                    "set it to the served model's name (e.g. 'llama3.2' for Ollama)",
                )
        return LocalChatModel(model=name, base_url=url, tool_mode=mode, **kwargs)  # type: ignore[arg-type]
    info = read_local_model_info(state_dir)
    if info is None:
        raise ConfigError(
            "FLINK_ACTORS_MODEL_URL",
            "is not set and no local model server is running",
            "start one with 'flink-actors up --model', or set FLINK_ACTORS_MODEL_URL "
            "(and FLINK_ACTORS_MODEL_NAME) to an OpenAI-compatible API",
        )
    kwargs.setdefault("first_turn_tool", True)
    kwargs.setdefault("max_tool_rounds", 1)
    return LocalChatModel(
        model=str(info["model"]),
        base_url=str(info["base_url"]),
        tool_mode=mode,  # type: ignore[arg-type]
        schema_style=info.get("schema_style", "json_object"),
        **kwargs,
    )

"""Agent memory: a token-bounded conversation window, and long-term memory in a vector store.

`ShortTermMemory` is a pydantic model meant to live in an agent's state (it checkpoints with
it): the conversation so far, trimmed oldest-first to `max_tokens`, with a running `summary` of
what was trimmed. Tokens are counted by a pluggable counter (the default estimates four
characters a token); summarising is a hook the caller passes, called with the trimmed messages,
so it may itself call a model through the agent's context (and be journaled like any call).

`LongTermMemory` is a context source over a vector store, namespaced per agent key by a
metadata field: `add`, `search` and `forget` run as effects, so a replay sees the same memory.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from actors.context_sources.base import ContextSource, check_source_name
from actors.context_sources.embeddings import EmbeddingModel
from actors.context_sources.vector_store import VectorStore
from protocols.errors import ContextError, UserError
from protocols.events import ChatMessage

__all__ = [
    "LongTermMemory",
    "ShortTermMemory",
    "Summarizer",
    "TokenCounter",
    "approx_token_count",
]

TokenCounter = Callable[[ChatMessage], int]
Summarizer = Callable[[list[ChatMessage], "str | None"], "str | Awaitable[str]"]


def approx_token_count(message: ChatMessage) -> int:
    """About four characters a token, plus four tokens of per-message overhead (role, framing).

    Close enough to OpenAI's and Llama's tokenizers on English prose to bound a context window;
    pass an exact counter (e.g. tiktoken) where the bound must be tight.
    """
    chars = len(message.content or "")
    chars += sum(len(c.name) + len(c.arguments) for c in message.tool_calls)
    return 4 + math.ceil(chars / 4)


class ShortTermMemory(BaseModel):
    """The recent conversation of one agent key, trimmed to a token budget.

    Leading system messages are pinned (never trimmed). Older messages go first; a tool result
    never stays without the assistant message that asked for it. The newest message is always
    kept, even alone over budget.
    """

    max_tokens: int = Field(default=4000, gt=0)
    messages: list[ChatMessage] = Field(default_factory=list)
    summary: str | None = None
    trimmed_count: int = 0

    def tokens(self, counter: TokenCounter = approx_token_count) -> int:
        """Tokens in the window (messages only; the summary is counted by `context`)."""
        return sum(counter(m) for m in self.messages)

    def append(
        self, message: ChatMessage, *, counter: TokenCounter = approx_token_count
    ) -> list[ChatMessage]:
        """Add `message`, trim to `max_tokens`; return the trimmed messages, oldest first."""
        self.messages.append(message)
        return self._trim(counter)

    async def add(
        self,
        message: ChatMessage,
        *,
        counter: TokenCounter = approx_token_count,
        summarize: Summarizer | None = None,
    ) -> list[ChatMessage]:
        """Add `message`, trim, and fold what was trimmed into `summary` with `summarize`.

        `summarize(trimmed, previous_summary)` returns the new summary (sync or async).
        """
        trimmed = self.append(message, counter=counter)
        if trimmed and summarize is not None:
            result = summarize(trimmed, self.summary)
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, str):
                raise UserError(
                    f"summarize hook returned {type(result).__name__!r}; return the summary str"
                )
            self.summary = result
        return trimmed

    def context(self) -> list[ChatMessage]:
        """Messages to send to a model: pinned system messages, the summary, then the window."""
        pinned = self._pinned()
        out = list(self.messages[:pinned])
        if self.summary:
            out.append(ChatMessage.system(f"Summary of the earlier conversation: {self.summary}"))
        out.extend(self.messages[pinned:])
        return out

    def clear(self) -> None:
        """Forget the conversation and its summary."""
        self.messages.clear()
        self.summary = None
        self.trimmed_count = 0

    def _pinned(self) -> int:
        n = 0
        while n < len(self.messages) and self.messages[n].role == "system":
            n += 1
        return n

    def _trim(self, counter: TokenCounter) -> list[ChatMessage]:
        pinned = self._pinned()
        costs = [counter(m) for m in self.messages]
        total = sum(costs)
        cut = pinned
        last = len(self.messages) - 1
        while total > self.max_tokens and cut < last:
            total -= costs[cut]
            cut += 1
        # A tool result must follow the assistant message that called it: drop orphans too.
        while cut < last and self.messages[cut].role == "tool":
            total -= costs[cut]
            cut += 1
        trimmed = self.messages[pinned:cut]
        if trimmed:
            self.messages = self.messages[:pinned] + self.messages[cut:]
            self.trimmed_count += len(trimmed)
        return trimmed


class LongTermMemory(ContextSource):
    """Facts an agent keeps across conversations, in a vector store, one namespace per key.

    Payloads (`ctx.search(name, text, op=..., agent_key=...)`):
      - `{"op": "add", "agent_key": str, "query": text, "metadata": {...}?, "id": str?}`
        -> `{"id": str}` (the id defaults to a hash of key and text, so re-adding is a no-op);
      - `{"op": "search", "agent_key": str, "query": text, "k": int = 5}` -> list of hits;
      - `{"op": "forget", "agent_key": str, "ids": [str] | None}` -> `{"forgotten": n}`
        (no ids: everything of that key).

    The store must declare the namespace field (default `agent_key`) as a `str` in its
    metadata schema, so searches and deletes filter on it in the store.
    """

    def __init__(
        self,
        name: str,
        store: VectorStore,
        embedder: EmbeddingModel,
        *,
        namespace_field: str = "agent_key",
        max_text_chars: int = 4000,
        max_k: int = 50,
    ) -> None:
        self.name = check_source_name(name)
        if namespace_field not in store.filterable_fields:
            raise UserError(
                f"LongTermMemory {name!r}: the store does not declare {namespace_field!r} as "
                f"filterable; create it with metadata_schema={{{namespace_field!r}: str}}"
            )
        if embedder.dimension != store.dimension:
            raise UserError(
                f"LongTermMemory {name!r}: embedder makes {embedder.dimension}-dimensional "
                f"vectors, the store holds {store.dimension}; pair them by dimension"
            )
        self.store = store
        self.embedder = embedder
        self.namespace_field = namespace_field
        self.max_text_chars = max_text_chars
        self.max_k = max_k
        self.description = "Remember facts and recall them by meaning."

    def _key(self, payload: Mapping[str, Any]) -> str:
        key = payload.get("agent_key")
        if not isinstance(key, str) or not key:
            raise self._error(f"agent_key {key!r} must be a non-empty string")
        return key

    def _text(self, payload: Mapping[str, Any]) -> str:
        text = payload.get("query")
        if not isinstance(text, str) or not text.strip():
            raise self._error(f"text {text!r} is empty; pass a non-empty string")
        if len(text) > self.max_text_chars:
            raise self._error(
                f"text has {len(text)} characters, over max_text_chars={self.max_text_chars}"
            )
        return text

    async def add(
        self,
        agent_key: str,
        text: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        memory_id: str | None = None,
    ) -> str:
        """Remember `text` for `agent_key`; return its id."""
        result = await self.query(
            {
                "op": "add",
                "agent_key": agent_key,
                "query": text,
                "metadata": metadata or {},
                "id": memory_id,
            }
        )
        return str(result["id"])

    async def search(self, agent_key: str, text: str, *, k: int = 5) -> list[dict[str, Any]]:
        """The `k` memories of `agent_key` closest in meaning to `text`."""
        return await self.query({"op": "search", "agent_key": agent_key, "query": text, "k": k})

    async def forget(self, agent_key: str, ids: Sequence[str] | None = None) -> int:
        """Forget the given memories of `agent_key`, or all of them; return how many."""
        result = await self.query({"op": "forget", "agent_key": agent_key, "ids": ids})
        return int(result["forgotten"])

    async def query(self, payload: dict[str, Any]) -> Any:
        op = payload.get("op", "search")
        key = self._key(payload)
        scope = {self.namespace_field: key}
        try:
            if op == "add":
                text = self._text(payload)
                meta = dict(payload.get("metadata") or {})
                meta[self.namespace_field] = key
                digest = hashlib.sha256(f"{key}\x00{text}".encode()).hexdigest()[:32]
                memory_id = payload.get("id") or digest
                vectors = await self.embedder.embed([text])
                await self.store.upsert([f"{key}/{memory_id}"], vectors, [text], [meta])
                return {"id": str(memory_id)}
            if op == "search":
                text = self._text(payload)
                k = payload.get("k", 5)
                if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.max_k:
                    raise self._error(f"k={k!r} must be an integer from 1 to {self.max_k}")
                vector = await self.embedder.embed_query(text)
                hits = await self.store.search(vector, k, scope)
                prefix = f"{key}/"
                return [
                    {**h.model_dump(mode="json"), "id": h.id.removeprefix(prefix)} for h in hits
                ]
            if op == "forget":
                before = await self.store.count(scope)
                ids = payload.get("ids")
                if ids is None:
                    await self.store.delete_where(scope)
                else:
                    await self.store.delete([f"{key}/{i}" for i in ids])
                return {"forgotten": before - await self.store.count(scope)}
        except ContextError as exc:
            if str(exc).startswith(f"context source {self.name!r}"):
                raise
            raise self._error(str(exc)) from exc
        raise self._error(f"unknown op {op!r}; use 'add', 'search' or 'forget'")

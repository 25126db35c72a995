"""`VectorSearch`: semantic search over a vector store, as a context source and a tool.

Payload (what `ctx.search(name, query, k=..., where=...)` sends):
`{"query": str, "k": int = 5, "where": {field: value | {op: value}} | None}`.
Returns a list of hits as dicts: `{"id", "score", "document", "metadata"}`, best first.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from actors.context_sources.base import ContextSource, check_source_name
from actors.context_sources.embeddings import EmbeddingModel
from actors.context_sources.vector_store import VectorStore
from protocols.errors import ContextError

__all__ = ["VectorSearch"]


class VectorSearch(ContextSource):
    """Embed the query with `embedder`, then search `store` for the `k` nearest documents.

    Args:
        name: The source name (effect target and tool name).
        store: Where the documents live.
        embedder: The model that embedded them; its dimension must equal the store's.
        description: What the corpus holds, shown to models when used as a tool.
        max_query_chars: Longer queries are refused (`ContextError`), not silently cut.
        max_k: The largest `k` a caller may ask for.
    """

    def __init__(
        self,
        name: str,
        store: VectorStore,
        embedder: EmbeddingModel,
        *,
        description: str = "",
        max_query_chars: int = 2000,
        max_k: int = 50,
    ) -> None:
        self.name = check_source_name(name)
        self.store = store
        self.embedder = embedder
        self.description = description or f"Semantic search over the {name!r} documents."
        self.max_query_chars = max_query_chars
        self.max_k = max_k

    def _check_dimensions(self) -> None:
        if self.embedder.dimension != self.store.dimension:
            raise self._error(
                f"dimension mismatch: embedder {self.embedder!r} makes "
                f"{self.embedder.dimension}-dimensional vectors, store {self.store!r} holds "
                f"{self.store.dimension}; pair the store with the model that filled it"
            )

    async def index(
        self,
        ids: Sequence[str],
        documents: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Embed `documents` and upsert them under `ids` (an indexing helper, not an effect)."""
        self._check_dimensions()
        vectors = await self.embedder.embed(list(documents))
        await self.store.upsert(ids, vectors, documents, metadata)

    async def query(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        text = payload.get("query")
        if not isinstance(text, str) or not text.strip():
            raise self._error(f"query {text!r} is empty; pass a non-empty string")
        if len(text) > self.max_query_chars:
            raise self._error(
                f"query has {len(text)} characters, over max_query_chars={self.max_query_chars}; "
                "shorten it or raise the limit"
            )
        k = payload.get("k", 5)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.max_k:
            raise self._error(f"k={k!r} must be an integer from 1 to {self.max_k}")
        where = payload.get("where")
        self._check_dimensions()
        try:
            vector = await self.embedder.embed_query(text)
            hits = await self.store.search(vector, k, where or None)
        except ContextError as exc:
            raise self._error(str(exc)) from exc
        return [hit.model_dump(mode="json") for hit in hits]

    def tool_signature(self) -> inspect.Signature:
        kw = inspect.Parameter.KEYWORD_ONLY
        return inspect.Signature(
            [
                inspect.Parameter("query", kw, annotation=str),
                inspect.Parameter("k", kw, default=5, annotation=int),
                inspect.Parameter("where", kw, default=None, annotation=dict[str, Any] | None),
            ],
            return_annotation=list[dict[str, Any]],
        )

    def tool_doc(self) -> str:
        fields = sorted(self.store.filterable_fields)
        return (
            f"{self.description}\n\n"
            "Args:\n"
            "    query: What to look for, in natural language.\n"
            f"    k: How many documents to return (1 to {self.max_k}).\n"
            f"    where: Optional metadata filter on {fields!r}, e.g. "
            '{"field": "value"} or {"field": {"$gte": 3}}.\n'
        )

    def payload_from_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in arguments.items() if k in ("query", "k", "where")}

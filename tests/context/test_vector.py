from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from actors.context_sources import (
    E5EmbeddingModel,
    LanceVectorStore,
    VectorSearch,
    as_tool,
)
from protocols.errors import ContextError
from tests.context.labelled import DOCS, QUERIES, TOPICS


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, e5: E5EmbeddingModel) -> VectorSearch:
    path = tmp_path_factory.mktemp("lance")
    store = LanceVectorStore(str(path), table="faq", dimension=384, metadata_schema={"topic": str})
    source = VectorSearch("faq", store, e5)
    ids = sorted(DOCS)
    vectors = e5.embed_sync([DOCS[i] for i in ids])
    store.upsert_sync(ids, vectors, [DOCS[i] for i in ids], [{"topic": TOPICS[i]} for i in ids])
    return source


async def test_recall_at_5_on_the_labelled_set(indexed: VectorSearch) -> None:
    found = 0
    for text, answer in QUERIES:
        hits = await indexed.query({"query": text, "k": 5})
        assert len(hits) == 5
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        found += answer in [h["id"] for h in hits]
    recall = found / len(QUERIES)
    print(f"recall@5 = {recall:.2f} over {len(QUERIES)} queries, {len(DOCS)} documents")
    assert recall >= 0.85


async def test_metadata_filter_restricts_hits(indexed: VectorSearch) -> None:
    hits = await indexed.query({"query": "how do I pay", "k": 5, "where": {"topic": "ship"}})
    assert {h["metadata"]["topic"] for h in hits} == {"ship"}
    hits = await indexed.query(
        {"query": "how do I pay", "k": 10, "where": {"topic": {"$in": ["bill", "acct"]}}}
    )
    assert len(hits) == 10 and {h["metadata"]["topic"] for h in hits} == {"bill", "acct"}


async def test_results_are_msgpack_friendly_and_deterministic(indexed: VectorSearch) -> None:
    import msgpack

    payload = {"query": "why is mars red", "k": 3}
    first = await indexed.query(payload)
    assert msgpack.unpackb(msgpack.packb(first)) == first
    assert await indexed.query(payload) == first


async def test_upsert_replaces_and_delete_removes(tmp_path: Path, e5: E5EmbeddingModel) -> None:
    store = LanceVectorStore(str(tmp_path), dimension=384, metadata_schema={"topic": str})
    source = VectorSearch("notes", store, e5)
    await source.index(["a", "b"], ["The sky is blue.", "Grass is green."], [{"topic": "x"}] * 2)
    await source.index(["a"], ["Bananas are yellow."], [{"topic": "y"}])
    assert await store.count() == 2
    hits = await source.query({"query": "what colour are bananas", "k": 1})
    assert hits[0]["id"] == "a" and hits[0]["document"] == "Bananas are yellow."
    await store.delete(["a"])
    assert [h["id"] for h in await source.query({"query": "bananas", "k": 5})] == ["b"]


async def test_source_pickles_without_open_resources(indexed: VectorSearch) -> None:
    await indexed.query({"query": "warm up", "k": 1})
    clone = pickle.loads(pickle.dumps(indexed))
    assert clone.store._tbl is None and clone.embedder._model is None
    hits = await clone.query({"query": "why is mars red", "k": 1})
    assert hits[0]["id"] == "astr1"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"query": ""}, "empty"),
        ({"query": "   "}, "empty"),
        ({"k": 3}, "empty"),
        ({"query": "x" * 2001}, "max_query_chars"),
        ({"query": "ok", "k": 0}, "k=0"),
        ({"query": "ok", "k": 500}, "k=500"),
        ({"query": "ok", "where": {"year": 2020}}, "not filterable"),
        ({"query": "ok", "where": {"topic": {"$regex": "x"}}}, "unknown"),
        ({"query": "ok", "where": {"topic": ["a"]}}, "str, int, float or bool"),
    ],
)
async def test_bad_queries_raise_context_error(
    indexed: VectorSearch, payload: dict, needle: str
) -> None:
    with pytest.raises(ContextError, match=needle):
        await indexed.query(payload)


async def test_filter_values_are_escaped(indexed: VectorSearch) -> None:
    hits = await indexed.query({"query": "x", "where": {"topic": "ship' OR '1'='1"}})
    assert hits == []


async def test_dimension_mismatch_is_a_context_error(tmp_path: Path, e5: E5EmbeddingModel) -> None:
    store = LanceVectorStore(str(tmp_path), dimension=8)
    with pytest.raises(ContextError, match="dimension mismatch") as info:
        await VectorSearch("small", store, e5).query({"query": "hello"})
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, Exception)
    with pytest.raises(ContextError, match="dimension mismatch"):
        await store.upsert(["a"], [[0.0] * 3], ["doc"])
    store.upsert_sync(["a"], [[1.0] + [0.0] * 7], ["doc"])
    reopened = LanceVectorStore(str(tmp_path), dimension=384)
    with pytest.raises(ContextError, match="holds 8-dimensional") as info:
        await VectorSearch("big", reopened, e5).query({"query": "hello"})
    assert isinstance(info.value.__cause__, ContextError)


async def test_as_tool_exposes_a_real_signature(indexed: VectorSearch) -> None:
    import inspect

    fn = as_tool(indexed)
    assert fn.__name__ == "faq"
    params = inspect.signature(fn).parameters
    assert list(params) == ["query", "k", "where"] and params["k"].default == 5
    assert "Args:" in (fn.__doc__ or "") and "'topic'" in (fn.__doc__ or "")
    hits = await fn(query="where is my package", k=2)
    assert hits[0]["id"] == "ship4"
    with pytest.raises(TypeError):
        await fn(text="wrong argument name")

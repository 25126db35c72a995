"""Footprint and k=5 query latency of the embedded vector store (LanceDB) at 10k and 100k rows.

Random unit vectors of the embedder's dimension (384) stand in for documents: latency and size
depend on the count and the dimension, not on the text. 10k rows are searched by exact scan
(no index); 100k rows get the IVF index `LanceVectorStore.create_index` builds. Filtered queries
match one tenth of the rows. Bounded: a fixed number of queries per size. The last line printed
is one JSON object.

    python bench/bench_vector.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.context_sources import E5EmbeddingModel, LanceVectorStore  # noqa: E402

DIM = 384
QUERIES = 100


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def disk_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def measure(n: int, rng: np.random.Generator, index: bool) -> dict[str, float]:
    path = tempfile.mkdtemp(prefix="bench_vector_")
    store = LanceVectorStore(path, dimension=DIM, metadata_schema={"group": str})
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    batch = 20_000
    for start in range(0, n, batch):
        count = min(batch, n - start)
        vectors = rng.standard_normal((count, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [f"d{i}" for i in range(start, start + count)]
        store.upsert_sync(
            ids,
            vectors,
            ["doc"] * count,
            [{"group": f"g{i % 10}"} for i in range(start, start + count)],
        )
    ingest_s = time.perf_counter() - t0
    index_s = 0.0
    if index:
        t1 = time.perf_counter()
        store.create_index()
        index_s = time.perf_counter() - t1
    queries = rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    store.search_sync(queries[0], 5)
    out: dict[str, float] = {}
    for label, where in (("", None), ("filter_", {"group": "g3"})):
        lat = []
        for q in queries:
            t = time.perf_counter()
            hits = store.search_sync(q, 5, where)
            lat.append((time.perf_counter() - t) * 1000)
            assert len(hits) == 5
        out[f"{label}p50_ms"] = pct(lat, 50)
        out[f"{label}p99_ms"] = pct(lat, 99)
    out["disk_mb"] = round(disk_bytes(path) / 1e6, 1)
    out["rss_delta_mb"] = round((rss_bytes() - rss0) / 1e6, 1)
    out["ingest_s"] = round(ingest_s, 2)
    out["index_s"] = round(index_s, 2)
    shutil.rmtree(path, ignore_errors=True)
    return out


def embed_rate() -> float:
    model = E5EmbeddingModel()
    model.embed_sync(["warm up"])
    sentences = [f"Sentence number {i} about shipping, billing and accounts." for i in range(64)]
    t = time.perf_counter()
    model.embed_sync(sentences)
    return round(len(sentences) / (time.perf_counter() - t), 1)


def main() -> None:
    rng = np.random.default_rng(0)
    result: dict[str, object] = {"bench": "vector", "store": "lancedb", "dim": DIM}
    for n, tag, index in ((10_000, "n_10k", False), (100_000, "n_100k", True)):
        figures = measure(n, rng, index)
        print(tag, figures, flush=True)
        result.update({f"{tag}_{k}": v for k, v in figures.items()})
    result["embed_sentences_per_s"] = embed_rate()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""The real Chroma store with the real MiniLM embedding model: embedded and as a `chroma run` server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, stop_process
from vectorstore.embeddings import MiniLMEmbeddingFunction
from vectorstore.settings import VectorStoreSettings
from vectorstore.store import VectorStore, item_metadata, where_clause


def _items(stores, n=120):
    from loaders.schema import split_tags

    ids = [str(x) for x in stores.item_ids[:n]]
    texts = [stores.item_text(i) for i in range(n)]
    metas = [item_metadata(stores.categories[i], stores.prices[i], split_tags(stores.catalog["tags"].iat[i]))
             for i in range(n)]
    return ids, texts, metas


@pytest.fixture(scope="module")
def embedder(embedding_cache):
    return MiniLMEmbeddingFunction(cache_path=str(embedding_cache))


def _check_store(vs: VectorStore, stores, name: str) -> None:
    ids, texts, metas = _items(stores)
    first = vs.sync(name, ids, texts, metas, progress=False)
    assert (first.added, first.updated, first.removed) == (120, 0, 0)
    again = vs.sync(name, ids, texts, metas, progress=False)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 120)
    assert vs.count(name) == 120  # idempotent: no duplicates
    texts = list(texts)
    texts[3] = texts[3] + " Now waterproof."
    changed = vs.sync(name, ids[:-1], texts[:-1], metas[:-1], progress=False)
    assert (changed.added, changed.updated, changed.removed) == (0, 1, 1)
    assert vs.count(name) == 119

    # Metadata filters: every hit meets category, price range and tag.
    where = where_clause(category="electronics", price_min=20, price_max=300, tags=["audio"])
    hits = vs.query(name, text="wireless headphones", n=10, where=where)
    assert hits, "expected at least one electronics audio item in the slice"
    for hit in hits:
        rec = stores.item_record(stores.item_idx(hit.item_id))
        assert rec["category"] == "electronics" and 20 <= rec["price"] <= 300 and "audio" in rec["tags"]
    # Semantic relevance: a cooking query finds cooking books/kitchen items first.
    top = vs.query(name, text="recipes for baking bread", n=3)
    top_tags = [set(stores.item_record(stores.item_idx(h.item_id))["tags"]) for h in top]
    assert any({"cooking", "baking", "recipes", "kitchen"} & t for t in top_tags)
    assert top[0].similarity >= top[-1].similarity


def test_embedded_store(demo_stores, embedder, tmp_path):
    vs = VectorStore(VectorStoreSettings(mode="embedded"), tmp_path, embedder)
    _check_store(vs, demo_stores, "embedded-test")
    # Survives a new client on the same folder (persistent).
    again = VectorStore(VectorStoreSettings(mode="embedded"), tmp_path, embedder)
    assert again.count("embedded-test") == 119


@pytest.mark.slow
def test_http_server_store(demo_stores, embedder, tmp_path):
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("chroma")), "run", "--path", str(tmp_path / "srv"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("chroma server did not start")
        vs = VectorStore(VectorStoreSettings(mode="http", host="127.0.0.1", port=port), tmp_path, embedder)
        _check_store(vs, demo_stores, "http-test")
    finally:
        stop_process(proc)


def test_embedded_store_finds_what_it_just_indexed(demo_stores, embedder, tmp_path):
    """The collection's handle and size are kept between queries; a sync in this process refreshes them."""
    vs = VectorStore(VectorStoreSettings(mode="embedded"), tmp_path, embedder)
    ids, texts, metas = _items(demo_stores, 30)
    vs.sync("grow", ids[:10], texts[:10], metas[:10], progress=False)
    assert len(vs.query("grow", text="a gift", n=100)) == 10
    vs.sync("grow", ids, texts, metas, progress=False)
    assert {h.item_id for h in vs.query("grow", text="a gift", n=100)} == set(ids)


def test_embeddings_are_offline_normalised_and_cached(embedder, embedding_cache):
    import numpy as np

    vecs = embedder.embed(["a quiet mechanical keyboard", "a quiet mechanical keyboard", "garden hose"])
    assert vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert np.allclose(vecs[0], vecs[1])
    assert float(vecs[0] @ vecs[2]) < 0.6
    assert embedding_cache.exists()
    assert MiniLMEmbeddingFunction.name() == "fusionrec-minilm"

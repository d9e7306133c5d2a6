"""The Chroma vector store of item texts: embedded PersistentClient by default, a `chroma run` server
through HttpClient when configured. Index builds are idempotent and only re-embed what changed."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings
from tqdm import tqdm

from vectorstore.embeddings import MiniLMEmbeddingFunction
from vectorstore.settings import VectorStoreSettings


@dataclass(frozen=True)
class SyncReport:
    added: int
    updated: int
    removed: int
    unchanged: int

    def __str__(self) -> str:
        return f"added {self.added}, updated {self.updated}, removed {self.removed}, unchanged {self.unchanged}"


@dataclass(frozen=True)
class Hit:
    item_id: str
    similarity: float


def text_hash(text: str, metadata: dict[str, Any]) -> str:
    payload = text + "\x00" + repr(sorted((k, v) for k, v in metadata.items()))
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def item_metadata(category: str, price: float | None, tags: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"category": category or ""}
    if price is not None and not math.isnan(price):
        meta["price"] = float(price)
    if tags:
        meta["tags"] = list(tags)
    return meta


def where_clause(category: str | None = None, price_min: float | None = None, price_max: float | None = None,
                 tags: list[str] | None = None) -> dict[str, Any] | None:
    """Chroma `where` filter for hard constraints (all must hold)."""
    parts: list[dict[str, Any]] = []
    if category:
        parts.append({"category": category.lower()})
    if price_min is not None:
        parts.append({"price": {"$gte": float(price_min)}})
    if price_max is not None:
        parts.append({"price": {"$lte": float(price_max)}})
    for tag in tags or []:
        parts.append({"tags": {"$contains": tag.lower()}})
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


class VectorStore:
    def __init__(self, settings: VectorStoreSettings, home: Path, embedder: MiniLMEmbeddingFunction | None = None):
        self.settings = settings
        self.embedder = embedder or MiniLMEmbeddingFunction(cache_path=str(home / "embeddings.sqlite"))
        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        if settings.mode == "http":
            self.client = chromadb.HttpClient(host=settings.host, port=settings.port, settings=chroma_settings)
        else:
            path = home / "chroma"
            path.mkdir(parents=True, exist_ok=True)
            self.client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        # Embedded mode: this process owns the store, so a collection's handle and size are looked up once
        # (each lookup is a round trip through Chroma's bindings, ~1-2 ms per query); sync() refreshes them.
        # A `chroma run` server may be re-indexed by another process: there both are asked every time.
        self._handles: dict[str, Any] = {}
        self._sizes: dict[str, int] = {}

    def collection_name(self, dataset_key: str) -> str:
        raw = f"{self.settings.collection_prefix}-{dataset_key}"
        return "".join(c if c.isalnum() or c in "-_." else "-" for c in raw)[:60]

    def collection(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            handle = self.client.get_or_create_collection(
                name=name, embedding_function=self.embedder, configuration={"hnsw": {"space": "cosine"}}  # type: ignore[arg-type]
            )
            if self.settings.mode != "http":
                self._handles[name] = handle
        return handle

    def _size(self, name: str, col: Any) -> int:
        size = self._sizes.get(name)
        if size is None:
            size = int(col.count())
            if self.settings.mode != "http":
                self._sizes[name] = size
        return size

    def sync(self, name: str, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]],
             progress: bool = True) -> SyncReport:
        """Make the collection hold exactly these items; embed only new or changed ones."""
        col = self.collection(name)
        hashes = [text_hash(t, m) for t, m in zip(texts, metadatas, strict=True)]
        existing: dict[str, str] = {}
        batch = 5000
        total = col.count()
        for offset in range(0, total, batch):
            got = col.get(include=["metadatas"], limit=batch, offset=offset)
            for item_id, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                existing[item_id] = str((meta or {}).get("text_hash", ""))
        wanted = set(ids)
        stale = [i for i in existing if i not in wanted]
        todo = [k for k, (i, h) in enumerate(zip(ids, hashes, strict=True)) if existing.get(i) != h]
        added = sum(1 for k in todo if ids[k] not in existing)
        for start in range(0, len(stale), batch):
            col.delete(ids=stale[start:start + batch])
        step = self.settings.batch_size
        bar = tqdm(total=len(todo), desc=f"indexing {name}", unit="item", disable=not progress or not todo)
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            vectors = self.embedder.embed([texts[k] for k in chunk])
            col.upsert(
                ids=[ids[k] for k in chunk],
                documents=[texts[k] for k in chunk],
                metadatas=[{**metadatas[k], "text_hash": hashes[k]} for k in chunk],
                embeddings=vectors,  # type: ignore[arg-type]
            )
            bar.update(len(chunk))
        bar.close()
        self._sizes.pop(name, None)
        return SyncReport(added=added, updated=len(todo) - added, removed=len(stale),
                          unchanged=len(ids) - len(todo))

    def upsert_item(self, name: str, item_id: str, text: str, metadata: dict[str, Any], embedding: np.ndarray) -> None:
        """Add or replace one item's vector (a live catalog edit); stored as ``sync`` stores it."""
        col = self.collection(name)
        col.upsert(ids=[item_id], documents=[text], metadatas=[{**metadata, "text_hash": text_hash(text, metadata)}],
                   embeddings=[np.asarray(embedding, np.float32)])  # type: ignore[arg-type]
        self._sizes.pop(name, None)

    def delete_item(self, name: str, item_id: str) -> None:
        """Remove one item's vector (a withdrawn item); nothing happens for an id the store does not hold."""
        self.collection(name).delete(ids=[item_id])
        self._sizes.pop(name, None)

    def count(self, name: str) -> int:
        return int(self.collection(name).count())

    def embeddings(self, name: str, ids: list[str]) -> np.ndarray:
        """Stored vectors aligned with ``ids`` (zeros for ids not in the store)."""
        col = self.collection(name)
        out = np.zeros((len(ids), self.embedder_dimension()), np.float32)
        pos = {item_id: k for k, item_id in enumerate(ids)}
        batch = 5000
        for offset in range(0, col.count(), batch):
            got = col.get(include=["embeddings"], limit=batch, offset=offset)
            for item_id, vec in zip(got["ids"], got["embeddings"], strict=True):  # type: ignore[arg-type]
                if item_id in pos:
                    out[pos[item_id]] = vec
        return out

    def embedder_dimension(self) -> int:
        from vectorstore.embeddings import DIMENSION

        return DIMENSION

    def query(self, name: str, text: str | None = None, embedding: np.ndarray | None = None, n: int = 20,
              where: dict[str, Any] | None = None) -> list[Hit]:
        """Nearest items to a text or a vector, optionally filtered by metadata."""
        col = self.collection(name)
        if embedding is None:
            if text is None:
                raise ValueError("query needs a text or an embedding")
            embedding = self.embedder.embed([text])[0]
        n = max(1, min(n, self._size(name, col)))
        res = col.query(query_embeddings=[np.asarray(embedding, np.float32)], n_results=n, where=where,
                        include=["distances"])
        return [Hit(item_id=i, similarity=1.0 - float(d))
                for i, d in zip(res["ids"][0], (res["distances"] or [[]])[0], strict=True)]

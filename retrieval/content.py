"""Content source: cosine between item embeddings and the user's taste profile (feedback-weighted mean)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class ContentProfile:
    def __init__(self, item_embeddings: np.ndarray):
        norms = np.linalg.norm(item_embeddings, axis=1, keepdims=True) + 1e-9
        self.items = (item_embeddings / norms).astype(np.float32)

    def with_vector(self, item: int, embedding: np.ndarray) -> ContentProfile:
        """A copy with ``item``'s embedding set (``item == len(self.items)``: a new item, appended)."""
        vector = (embedding / (np.linalg.norm(embedding) + 1e-9)).astype(np.float32)
        items = np.vstack([self.items, vector[None, :]]) if item == len(self.items) else self.items.copy()
        items[item] = vector
        out = ContentProfile.__new__(ContentProfile)
        out.items = items
        return out

    def profile(self, user_row: sp.csr_matrix) -> np.ndarray | None:
        if user_row.nnz == 0:
            return None
        vec = user_row.data @ self.items[user_row.indices]
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else None

    def score(self, user_row: sp.csr_matrix) -> np.ndarray:
        prof = self.profile(user_row)
        if prof is None:
            return np.zeros(len(self.items), np.float32)
        return self.items @ prof

    def similarity_to(self, vector: np.ndarray) -> np.ndarray:
        vector = vector / (np.linalg.norm(vector) + 1e-9)
        return self.items @ vector.astype(np.float32)

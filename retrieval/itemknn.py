"""Item-kNN on co-occurrence: cosine similarity of item columns with shrinkage, top-k pruned."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def prune_columns(sim: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of every row (vectorised over rows)."""
    sim = sim.tocsr()
    sim.sort_indices()
    lengths = np.diff(sim.indptr)
    if lengths.max(initial=0) <= k:
        return sim
    rows = np.repeat(np.arange(sim.shape[0]), lengths)
    # rank inside each row by descending value
    order = np.lexsort((-sim.data, rows))
    rank = np.empty_like(order)
    starts = np.repeat(sim.indptr[:-1], lengths)
    rank[order] = np.arange(len(order)) - starts
    keep = rank < k
    return sp.csr_matrix((sim.data[keep], sim.indices[keep], np.r_[0, np.cumsum(np.minimum(lengths, k))]),
                         shape=sim.shape)


def grow_square(matrix: sp.csr_matrix, n_items: int) -> sp.csr_matrix:
    """The items x items matrix with empty rows and columns up to ``n_items`` (existing entries unchanged)."""
    m = matrix.tocsr()
    extra = n_items - m.shape[0]
    indptr = np.concatenate([m.indptr, np.full(extra, m.indptr[-1], m.indptr.dtype)])
    return sp.csr_matrix((m.data, m.indices, indptr), shape=(n_items, n_items))


class ItemKNN:
    def __init__(self, neighbours: int = 200, shrink: float = 10.0):
        self.neighbours = neighbours
        self.shrink = shrink
        self.similarity: sp.csr_matrix | None = None  # S[j, i]: how much history item j supports item i
        self._by_item: sp.csc_matrix | None = None

    def fit(self, feedback: sp.csr_matrix) -> ItemKNN:
        binary = (feedback > 0).astype(np.float32).tocsc()
        co = (binary.T @ binary).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel()).astype(np.float32)
        co = co.tocoo()
        denom = norms[co.row] * norms[co.col] + self.shrink + 1e-9
        sim = sp.csr_matrix((co.data / denom, (co.row, co.col)), shape=co.shape)
        # Row i of `sim` keeps the k nearest neighbours of item i; transposed, column i holds them.
        self.similarity = prune_columns(sim, self.neighbours).T.tocsr()
        self._by_item = self.similarity.tocsc()
        return self

    def load(self, similarity: sp.csr_matrix) -> ItemKNN:
        self.similarity = similarity.tocsr()
        self._by_item = self.similarity.tocsc()
        return self

    def resized(self, n_items: int) -> ItemKNN:
        """A copy over ``n_items`` items (a live catalog addition): a new item has no neighbours yet."""
        assert self.similarity is not None, "fit first"
        out = ItemKNN(self.neighbours, self.shrink)
        return out.load(grow_square(self.similarity, n_items))

    def score(self, user_row: sp.csr_matrix) -> np.ndarray:
        """Sum of similarities to the user's items, weighted by feedback strength: one vector over items."""
        assert self.similarity is not None, "fit first"
        return np.asarray((user_row @ self.similarity).todense()).ravel()

    def similar(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._by_item is not None, "fit first"
        col = self._by_item[:, item].tocoo()
        order = np.lexsort((col.row, -col.data))[:n]
        return col.row[order], col.data[order]

    def neighbour_vector(self, item: int) -> np.ndarray:
        """Dense similarity of every item to ``item`` (0 outside its neighbourhood)."""
        assert self._by_item is not None, "fit first"
        return self._by_item[:, item].toarray().ravel()

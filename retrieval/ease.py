"""EASE (Steck, 2019): a closed-form linear item-item model, dense over a bounded set of popular items."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from retrieval.arrays import load_dense, save_dense


class EASE:
    """B = I - P diag(1/diag(P)), P = (X'X + lambda I)^-1, diag(B) = 0, over the kept items only.

    An item is kept when at least ``min_support`` users interacted with it (default 3: an item seen
    once or twice gives the inverse almost nothing to estimate its column from, and costs as much
    memory as any other), and at most ``max_items`` items are kept, the most popular first (ties by
    item index): the model is a dense ``max_items``² float32 matrix (8000 items: 256 MB, more while
    fitting, when the float64 inverse is computed). Items outside the kept set score 0.

    Folding in a new or changed user costs nothing: a score depends only on the row passed to
    ``score``, never on the rows seen in ``fit``.
    """

    def __init__(self, regularization: float = 300.0, min_support: int = 3, max_items: int = 8000):
        self.regularization = regularization
        self.min_support = min_support
        self.max_items = max_items
        self.kept_items: np.ndarray = np.zeros(0, np.int64)  # sorted item indices that the model covers
        self.weights: np.ndarray | None = None  # B over kept_items x kept_items, float32
        self.n_items = 0
        self.memory_bytes = 0
        self.fit_seconds = 0.0
        self._position = np.zeros(0, np.int64)  # item index -> row of `weights`, -1 when not kept

    def fit(self, feedback: sp.csr_matrix) -> EASE:
        start = time.perf_counter()
        x = _binary(feedback)
        self.n_items = x.shape[1]
        support = np.diff(x.tocsc().indptr)
        kept = np.flatnonzero(support >= self.min_support)
        if len(kept) > self.max_items:
            kept = np.sort(kept[np.lexsort((kept, -support[kept]))[: self.max_items]])
        xk = x[:, kept]
        gram = (xk.T @ xk).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.regularization
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        del gram
        p /= -np.diag(p)  # column j divided by -P_jj
        p[np.diag_indices_from(p)] = 0.0
        self.weights = p.astype(np.float32)
        del p
        self.kept_items = kept
        self._position = np.full(self.n_items, -1, np.int64)
        self._position[kept] = np.arange(len(kept))
        self.memory_bytes = int(self.weights.nbytes + self.kept_items.nbytes + self._position.nbytes)
        self.fit_seconds = time.perf_counter() - start
        return self

    def save(self, path: Path) -> None:
        assert self.weights is not None, "fit first"
        np.savez(path, kept=self.kept_items, n_items=np.array([self.n_items]))
        save_dense(path.with_suffix(".weights.npy"), self.weights)  # the large part: memory-mapped when loaded

    def load(self, path: Path) -> EASE:
        data = np.load(path)
        self.kept_items, self.n_items = data["kept"], int(data["n_items"][0])
        mapped = path.with_suffix(".weights.npy")
        self.weights = load_dense(mapped) if mapped.is_file() else data["weights"]
        self._position = np.full(self.n_items, -1, np.int64)
        self._position[self.kept_items] = np.arange(len(self.kept_items))
        self.memory_bytes = int(self.weights.nbytes + self.kept_items.nbytes + self._position.nbytes)
        return self

    def resized(self, n_items: int) -> EASE:
        """A copy over ``n_items`` items (a live catalog addition): a new item is outside the kept set (scores 0).
        The weights are shared with this model, not copied."""
        out = EASE(self.regularization, self.min_support, self.max_items)
        out.weights, out.kept_items, out.n_items, out.fit_seconds = self.weights, self.kept_items, n_items, self.fit_seconds
        out._position = np.concatenate([self._position, np.full(n_items - self.n_items, -1, np.int64)])
        out.memory_bytes = int((self.weights.nbytes if self.weights is not None else 0) + out.kept_items.nbytes
                               + out._position.nbytes)
        return out

    def score(self, user_row: sp.csr_matrix) -> np.ndarray:
        """x_u B for the user's (binarised) row: a dense vector over all items, 0 outside ``kept_items``."""
        assert self.weights is not None, "fit first"
        row = sp.csr_matrix(user_row)
        positions = self._position[row.indices[row.data != 0]]
        positions = np.unique(positions[positions >= 0])
        out = np.zeros(self.n_items, np.float64)
        if positions.size:
            out[self.kept_items] = self.weights[positions].sum(axis=0, dtype=np.float64)
        return out


def _binary(m: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=np.float64, copy=True)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out

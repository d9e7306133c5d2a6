"""RP3beta (Paudel et al., 2016): a three-step random walk user -> item -> user -> item, popularity-penalised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from retrieval.arrays import load_csr, save_csr
from retrieval.itemknn import grow_square, prune_columns


class RP3Beta:
    """W[i, j] = (P_iu^alpha P_ui^alpha)[i, j] / popularity(j)^beta, diagonal removed, each row's top-k kept.

    P_ui and P_iu are the row-normalised transition matrices of the binarised user x item matrix;
    ``alpha`` is applied to their entries (1.0: plain probabilities), ``beta`` pushes popular items
    down (0: none), ``k`` bounds the neighbours kept per item (memory: at most n_items * k entries).
    A score depends only on the row passed to ``score``, so new users fold in for free.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.35, k: int = 200):
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.similarity: sp.csr_matrix | None = None  # W[i, j]: how much history item i supports item j

    def fit(self, feedback: sp.csr_matrix) -> RP3Beta:
        x = _binary(feedback)
        p_ui = _l1_rows(x)
        p_iu = _l1_rows(x.T.tocsr())
        if self.alpha != 1.0:
            p_ui.data **= self.alpha
            p_iu.data **= self.alpha
        walk = (p_iu @ p_ui).tocsr()
        walk.setdiag(0)
        walk.eliminate_zeros()
        popularity = np.diff(x.tocsc().indptr).astype(np.float64)
        penalty = np.divide(1.0, popularity**self.beta, out=np.zeros_like(popularity), where=popularity > 0)
        self.similarity = prune_columns((walk @ sp.diags(penalty)).tocsr(), self.k)
        return self

    def save(self, path: Path) -> None:
        assert self.similarity is not None, "fit first"
        save_csr(path, self.similarity)

    def load(self, path: Path) -> RP3Beta:
        self.similarity = load_csr(path)
        return self

    def resized(self, n_items: int) -> RP3Beta:
        """A copy over ``n_items`` items (a live catalog addition): a new item supports and gets nothing (scores 0)."""
        assert self.similarity is not None, "fit first"
        out = RP3Beta(self.alpha, self.beta, self.k)
        out.similarity = grow_square(self.similarity, n_items)
        return out

    def score(self, user_row: sp.csr_matrix) -> np.ndarray:
        """The user's binarised, l1-normalised row times W: a dense vector over all items."""
        assert self.similarity is not None, "fit first"
        row = _l1_rows(_binary(user_row))
        return np.asarray((row @ self.similarity).todense()).ravel()


def _binary(m: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=np.float64, copy=True)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def _l1_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    totals = np.asarray(m.sum(axis=1)).ravel()
    inverse = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
    return (sp.diags(inverse) @ m).tocsr()

"""Matrix factorisation baseline and source: implicit's ALS on the feedback matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


class ALS:
    def __init__(self, factors: int = 32, regularization: float = 0.1, alpha: float = 1.0, iterations: int = 15,
                 seed: int = 42, weighting: str = "log"):
        self.weighting = weighting  # "log": the feedback strengths as they are; "bm25": BM25-reweighted
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self._solver = None  # an implicit model over the item factors, for fold-in
        self._bm25: tuple[np.ndarray, float] | None = None  # (idf per item, mean row length) of the fitted matrix

    def fit(self, feedback: sp.csr_matrix) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import bm25_weight

        matrix = feedback.tocsr().astype(np.float32)
        if self.weighting == "bm25":
            matrix = bm25_weight(matrix, K1=100, B=0.8).tocsr().astype(np.float32)

        with threadpool_limits(1, "blas"):  # implicit is slow (and warns) with a threaded BLAS
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            alpha=self.alpha, iterations=self.iterations, random_state=self.seed,
                                            calculate_training_loss=False, num_threads=1)
            model.fit(matrix, show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, np.float32)
        return self

    def load(self, user_factors: np.ndarray, item_factors: np.ndarray) -> ALS:
        self.user_factors, self.item_factors = user_factors, item_factors
        self._solver = None
        return self

    def fold_in(self, user_row: sp.csr_matrix, fitted: sp.csr_matrix) -> np.ndarray:
        """The user's factor recomputed from a new feedback row with the item factors held fixed (one
        least-squares solve: implicit's ``recalculate_user``), weighted as at fit time; ``fitted`` is the matrix
        the model was fit on (BM25 takes its item frequencies and mean row length from it)."""
        from implicit.cpu.als import AlternatingLeastSquares

        assert self.item_factors is not None, "fit first"
        row = user_row.tocsr().astype(np.float32)
        if self.weighting == "bm25":
            if self._bm25 is None or len(self._bm25[0]) < row.shape[1]:  # (an item added live: seen by nobody)
                n_users = fitted.shape[0]
                df = np.bincount(fitted.indices, minlength=max(fitted.shape[1], row.shape[1]))
                self._bm25 = np.log(n_users) - np.log1p(df), float(np.asarray(fitted.sum(axis=1)).mean())
            idf, mean_length = self._bm25
            k1, b = 100.0, 0.8  # as in fit
            norm = (1.0 - b) + b * float(row.sum()) / max(mean_length, 1e-9)
            row = row.copy()
            row.data = (row.data * (k1 + 1.0) / (k1 * norm + row.data) * idf[row.indices]).astype(np.float32)
        solver = self._solver
        if solver is None:
            solver = AlternatingLeastSquares(factors=self.item_factors.shape[1], regularization=self.regularization,
                                             alpha=self.alpha, num_threads=1, random_state=self.seed)
            # implicit's solver needs writable factors; a loaded index maps them read-only (retrieval/arrays.py)
            solver.item_factors = self.item_factors if self.item_factors.flags.writeable else np.array(self.item_factors)
            self._solver = solver
        with threadpool_limits(1, "blas"):
            return np.asarray(solver.recalculate_user(0, row), np.float32)

    def score_factor(self, factor: np.ndarray) -> np.ndarray:
        assert self.item_factors is not None, "fit first"
        return self.item_factors @ factor

    def resized(self, n_items: int) -> ALS:
        """A copy over ``n_items`` items (a live catalog addition): a new item's factors are zero (no behaviour
        yet, so it scores 0 for everyone until the next fit)."""
        assert self.user_factors is not None and self.item_factors is not None, "fit first"
        out = ALS(self.factors, self.regularization, self.alpha, self.iterations, self.seed, self.weighting)
        extra = np.zeros((n_items - len(self.item_factors), self.item_factors.shape[1]), self.item_factors.dtype)
        return out.load(self.user_factors, np.vstack([self.item_factors, extra]))

    def score(self, user: int) -> np.ndarray:
        assert self.user_factors is not None and self.item_factors is not None, "fit first"
        return self.item_factors @ self.user_factors[user]

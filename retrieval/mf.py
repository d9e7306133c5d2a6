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
        return self

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

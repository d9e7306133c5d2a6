"""Single-source baselines, each with its own hyper-parameter grid tuned on the validation split.

Every method scores the full catalog for a user; the evaluator removes seen items and breaks ties by
item index for all methods alike.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from catalog.scope import scope_for
from catalog.stores import Stores
from retrieval.content import ContentProfile
from retrieval.itemknn import ItemKNN
from retrieval.mf import ALS
from retrieval.registry import REGISTRY, registered
from retrieval.settings import SourceSettings
from retrieval.social import FriendsSignal


@dataclass
class Baseline(ABC):
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def fit(self, stores: Stores, embeddings: np.ndarray) -> Baseline:
        self.stores = stores
        return self

    @abstractmethod
    def score(self, user: int) -> np.ndarray:
        """Scores over the whole catalog for one user (higher is better)."""


class Popularity(Baseline):
    def score(self, user: int) -> np.ndarray:
        return self.stores.popularity.astype(np.float64)


class ItemKNNBaseline(Baseline):
    def fit(self, stores: Stores, embeddings: np.ndarray) -> Baseline:
        self.stores = stores
        self.model = ItemKNN(self.params["neighbours"], self.params["shrink"]).fit(stores.feedback)
        return self

    def score(self, user: int) -> np.ndarray:
        return self.model.score(self.stores.feedback[user])


class ContentBaseline(Baseline):
    def fit(self, stores: Stores, embeddings: np.ndarray) -> Baseline:
        self.stores = stores
        self.model = ContentProfile(embeddings)
        return self

    def score(self, user: int) -> np.ndarray:
        row = self.stores.feedback[user]
        if not self.params.get("weighted", True):
            row = row.copy()
            row.data[:] = 1.0
        return self.model.score(row)


class SocialBaseline(Baseline):
    def fit(self, stores: Stores, embeddings: np.ndarray) -> Baseline:
        self.stores = stores
        self.model = FriendsSignal(self.params["weighted"]).fit(stores.positive, stores.feedback, stores.friends)
        return self

    def score(self, user: int) -> np.ndarray:
        scope = scope_for(self.stores, str(self.stores.user_ids[user]))
        counts, weighted = self.model.score(user, scope.friends, scope.friends_positive())
        base = weighted if self.params["weighted"] else counts
        # Items no friend bought tie at zero; the popularity back-off (tuned) orders them.
        backoff = self.params.get("popularity_backoff", 0.0)
        pop = np.log1p(self.stores.popularity)
        return base + backoff * pop / (pop.max() + 1e-9)


class ALSBaseline(Baseline):
    def fit(self, stores: Stores, embeddings: np.ndarray) -> Baseline:
        self.stores = stores
        p = self.params
        self.model = ALS(p["factors"], p["regularization"], p["alpha"], p.get("iterations", 15), p.get("seed", 42),
                         p.get("weighting", "log"))
        self.model.fit(stores.feedback)
        return self

    def score(self, user: int) -> np.ndarray:
        return self.model.score(user)


class RegisteredBaseline(Baseline):
    """A source of retrieval/registry.py alone; its params are SourceSettings fields (the fusion reuses them)."""

    def fit(self, stores: Stores, embeddings: np.ndarray) -> Baseline:
        self.stores = stores
        settings = SourceSettings().model_copy(update=self.params)
        self.model = registered(self.name).build(settings).fit(stores.feedback)
        return self

    def score(self, user: int) -> np.ndarray:
        return self.model.score(self.stores.feedback[user])


def registered_grids(quick: bool) -> dict[str, tuple[type[Baseline], list[dict[str, Any]]]]:
    return {e.name: (RegisteredBaseline, param_grid(**(e.quick_grid if quick else e.grid))) for e in REGISTRY}


def param_grid(**axes: list[Any]) -> list[dict[str, Any]]:
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


def baseline_grids(quick: bool = False) -> dict[str, tuple[type[Baseline], list[dict[str, Any]]]]:
    """The search space of every baseline (the same budget logic for all: a small full grid)."""
    if quick:
        return {
            "popularity": (Popularity, [{}]),
            "item-knn": (ItemKNNBaseline, param_grid(neighbours=[50, 200], shrink=[0.0, 10.0])),
            "content": (ContentBaseline, param_grid(weighted=[True, False])),
            "social": (SocialBaseline, param_grid(weighted=[True, False], popularity_backoff=[0.0, 0.01])),
            "mf-als": (ALSBaseline, param_grid(factors=[16, 32], regularization=[0.1], alpha=[1.0, 2.0], weighting=["log"])
                       + param_grid(factors=[32], regularization=[10.0], alpha=[0.03], weighting=["bm25"])),
            **registered_grids(quick),
        }
    return {
        "popularity": (Popularity, [{}]),
        "item-knn": (ItemKNNBaseline, param_grid(neighbours=[25, 50, 100, 200, 400], shrink=[0.0, 5.0, 20.0, 50.0])),
        "content": (ContentBaseline, param_grid(weighted=[True, False])),
        "social": (SocialBaseline, param_grid(weighted=[True, False], popularity_backoff=[0.0, 0.01, 0.1])),
        # Both weightings, each with alphas on its own scale (BM25 values are much larger than log1p counts).
        "mf-als": (ALSBaseline, param_grid(factors=[16, 24, 48, 64], regularization=[0.1, 1.0, 10.0],
                                           alpha=[1.0, 2.0, 4.0], weighting=["log"])
                   + param_grid(factors=[48, 64, 96, 128], regularization=[10.0, 20.0, 50.0], alpha=[0.03, 0.1, 0.3, 1.0],
                                weighting=["bm25"])),
        **registered_grids(quick),
    }

"""Holdout splits of behaviour data and training of the fusion model on held-out items.

Protocol (shared by `fusionrec index` and `fusionrec eval`): among users with at least
``min_items`` distinct positive items, hold out floor(fraction * n) (at least one) of each user's
positive items, chosen by a seeded shuffle. *All* events of a held-out (user, item) pair are removed
from training (views, clicks, tags too), and item tags derived from tag events are recomputed, so no
trace of a held-out pair leaks into any source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from catalog.scope import scope_for
from catalog.stores import Stores, build_stores
from fusion.candidates import build_pool
from fusion.model import FusionModel
from fusion.request import RecommendRequest
from fusion.selection import LabelledRows, Learner, Selection, choose_served
from indexing.settings import IndexConfig
from loaders.schema import Dataset
from retrieval.bundle import SourceModels


@dataclass
class Split:
    train: Dataset
    held: pd.DataFrame  # user_id, item_id


def holdout(dataset: Dataset, fraction: float, seed: int, min_items: int = 5) -> Split:
    pos = dataset.interactions[dataset.positive_mask(dataset.interactions)]
    pairs = pos[["user_id", "item_id"]].drop_duplicates().sort_values(["user_id", "item_id"]).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    pairs["r"] = rng.random(len(pairs))
    pairs["rank"] = pairs.groupby("user_id", observed=True)["r"].rank(method="first")
    n = pairs.groupby("user_id", observed=True)["user_id"].transform("size")
    k = np.maximum(1, np.floor(n * fraction)).astype(int)
    held = pairs[(pairs["rank"] <= k) & (n >= min_items)][["user_id", "item_id"]].reset_index(drop=True)
    return Split(train=dataset.without_pairs(held), held=held)


def fusion_folds(dataset: Dataset, fraction: float, seed: int, folds: int, first: Split | None = None) -> list[Split]:
    """Holdout folds whose labels train the fusion: the first is the validation split proper; the others
    hold out other random items (seeded). Every fold recomputes item tags without its held-out pairs: a
    fold that kept them would train the fusion on content features that know the answer, which serving
    never sees (only changed item texts are re-embedded, through the embedding cache)."""
    splits = [first or holdout(dataset, fraction, seed)]
    splits += [holdout(dataset, fraction, seed + 100 + f) for f in range(1, folds)]
    return splits


def training_rows(stores: Stores, models: SourceModels, held: pd.DataFrame, per_source: int,
                  max_users: int, seed: int, fold: int = 0) -> LabelledRows:
    """Features and labels of every candidate of the held-out users (models fit without their items)."""
    by_user = held.groupby("user_id", observed=True)["item_id"].agg(set)
    users = np.array(sorted(by_user.index))
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    parts = []
    for user_id in users:
        scope = scope_for(stores, user_id)
        pool = build_pool(scope, models, RecommendRequest(user_id=user_id, exclude_seen="all"), per_source)
        targets = {stores.item_index[i] for i in by_user[user_id] if i in stores.item_index}
        n = len(pool.items)
        parts.append(LabelledRows(pool.features, np.isin(pool.items, list(targets)),
                                  np.full(n, fold * stores.n_users + scope.user), pool.items.astype(np.int64),
                                  np.full(n, scope.user), np.full(n, fold), np.full(n, len(targets))))
    return LabelledRows.concat(parts)


def fold_rows(splits: list[Split], settings: IndexConfig, item_embeddings_for: Callable[[Stores], np.ndarray],
              stores_of: Callable[[Split], Stores] = lambda split: build_stores(split.train)) -> LabelledRows:
    """Training rows of every fold: sources fit without the fold's held-out items, labels = those items,
    groups = one id per (fold, user)."""
    parts = []
    per_fold_users = max(1, settings.fusion.max_training_users // max(len(splits), 1))
    for k, split in enumerate(splits):
        stores = stores_of(split)
        models = SourceModels.fit(stores, settings.sources, item_embeddings_for(stores))
        parts.append(training_rows(stores, models, split.held, settings.sources.per_source, per_fold_users,
                                   settings.sources.seed + k, fold=k))
    return LabelledRows.concat(parts)


def learner(settings: IndexConfig) -> Learner:
    """The fusion's learner as ``fit(x, y, groups) -> scorer`` (what the served-ranker choice refits)."""
    f = settings.fusion

    def fit(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        if y.sum() < 10 or y.sum() == len(y):
            return FusionModel.default().fused_logits
        return FusionModel.fit(x, y, f.regularization_c, model=f.model, groups=groups,
                               seed=settings.sources.seed).fused_logits
    return fit


def select_served(rows: LabelledRows, settings: IndexConfig, learn: Learner | None = None) -> Selection:
    """The fusion or the best single source, chosen on first-fold users the learner never saw (fusion/selection.py)."""
    f = settings.fusion
    return choose_served(rows, learn or learner(settings), f.selection_margin, f.selection_fraction,
                         settings.sources.seed + 7)


def train_fusion(dataset: Dataset, settings: IndexConfig, item_embeddings_for: Callable[[Stores], np.ndarray]) -> FusionModel:
    """Hold out items in several folds, fit the sources without them, learn fusion weights on them, and
    choose on validation users whether the fusion or the best single source is served."""
    f = settings.fusion
    splits = [s for s in fusion_folds(dataset, f.validation_fraction, settings.sources.seed, f.folds)
              if not s.held.empty]
    if not splits:
        return FusionModel.default()
    rows = fold_rows(splits, settings, item_embeddings_for)
    if rows.y.sum() < 10 or rows.y.sum() == len(rows.y):
        return FusionModel.default()
    fusion = FusionModel.fit(rows.x, rows.y, f.regularization_c, model=f.model, groups=rows.groups,
                             seed=settings.sources.seed,
                             info={"folds": len(splits), "validation_pairs": int(sum(len(s.held) for s in splits))})
    selection = select_served(rows, settings)
    return fusion.serving(selection.served, selection.to_json())

"""Holdout splits of behaviour data and training of the fusion model on held-out items.

Protocol (shared by `fusionrec index` and `fusionrec eval`): among users with at least
``min_items`` distinct positive items, hold out floor(fraction * n) (at least one) of each user's
positive items, chosen by a seeded shuffle. *All* events of a held-out (user, item) pair are removed
from training (views, clicks, tags too), and item tags derived from tag events are recomputed, so no
trace of a held-out pair leaks into any source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from agent.candidates import build_pool
from agent.fusion import FusionModel
from agent.request import RecommendRequest
from agent.settings import Settings
from loaders.schema import Dataset
from retrieval.bundle import SourceModels
from tools.scope import scope_for
from tools.stores import Stores, build_stores


@dataclass
class Split:
    train: Dataset
    held: pd.DataFrame  # user_id, item_id


def holdout(dataset: Dataset, fraction: float, seed: int, min_items: int = 5) -> Split:
    pos = dataset.interactions[dataset.interactions["kind"].isin(dataset.positive_kinds)]
    pairs = pos[["user_id", "item_id"]].drop_duplicates().sort_values(["user_id", "item_id"]).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    pairs["r"] = rng.random(len(pairs))
    pairs["rank"] = pairs.groupby("user_id", observed=True)["r"].rank(method="first")
    n = pairs.groupby("user_id", observed=True)["user_id"].transform("size")
    k = np.maximum(1, np.floor(n * fraction)).astype(int)
    held = pairs[(pairs["rank"] <= k) & (n >= min_items)][["user_id", "item_id"]].reset_index(drop=True)
    return Split(train=dataset.without_pairs(held), held=held)


def training_rows(stores: Stores, models: SourceModels, held: pd.DataFrame, per_source: int,
                  max_users: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features and labels of every candidate of the held-out users (models fit without their items)."""
    by_user = held.groupby("user_id", observed=True)["item_id"].agg(set)
    users = np.array(sorted(by_user.index))
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    xs, ys, groups = [], [], []
    for user_id in users:
        scope = scope_for(stores, user_id)
        pool = build_pool(scope, models, RecommendRequest(user_id=user_id, exclude_seen="all"), per_source)
        targets = {stores.item_index[i] for i in by_user[user_id] if i in stores.item_index}
        xs.append(pool.features)
        ys.append(np.isin(pool.items, list(targets)))
        groups.append(np.full(len(pool.items), scope.user))
    if not xs:
        return np.zeros((0, 0)), np.zeros(0, bool), np.zeros(0, int)
    return np.vstack(xs), np.concatenate(ys), np.concatenate(groups)


def train_fusion(dataset: Dataset, settings: Settings, item_embeddings_for: object) -> FusionModel:
    """Hold out validation items, fit the sources without them, learn fusion weights on them.

    ``item_embeddings_for(stores) -> np.ndarray`` returns item vectors aligned with a Stores' items.
    """
    split = holdout(dataset, settings.fusion.validation_fraction, settings.sources.seed)
    if split.held.empty:
        return FusionModel.default()
    stores = build_stores(split.train)
    models = SourceModels.fit(stores, settings.sources, item_embeddings_for(stores))  # type: ignore[operator]
    x, y, _ = training_rows(stores, models, split.held, settings.sources.per_source,
                            settings.fusion.max_training_users, settings.sources.seed)
    if y.sum() < 10 or y.sum() == len(y):
        return FusionModel.default()
    return FusionModel.fit(x, y, settings.fusion.regularization_c,
                           info={"validation_users": int(split.held["user_id"].nunique()),
                                 "validation_pairs": int(len(split.held))})

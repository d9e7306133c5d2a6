"""The positive rule of ratings: a rating below the threshold is an interaction, never a target, a friend's
pick or popularity; the same rule in the stores, the holdout targets and the friends' signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from catalog.scope import scope_for
from catalog.stores import build_stores
from indexing.training import holdout
from loaders import load_dataset
from retrieval.social import FriendsSignal


def _folder(tmp_path):
    items = [f"m{i}" for i in range(12)]
    pd.DataFrame({"item_id": items, "title": [f"Movie {i}" for i in range(12)]}).to_csv(tmp_path / "catalog.csv", index=False)
    rows = []
    for u in range(6):
        for i in range(12):
            stars = 5.0 if (i + u) % 2 == 0 else 2.0  # half loved, half disliked
            rows.append({"user_id": f"u{u}", "item_id": items[i], "kind": "rating", "weight": stars})
    pd.DataFrame(rows).to_csv(tmp_path / "interactions.csv", index=False)
    pd.DataFrame({"user_id": ["u0"], "friend_id": ["u1"]}).to_csv(tmp_path / "social.csv", index=False)
    return tmp_path


def test_low_ratings_are_never_positive(tmp_path):
    dataset = load_dataset(str(_folder(tmp_path)))
    assert dataset.rating_threshold == 4.0  # generic: 80% of the highest rating (5 stars)
    low = {(r.user_id, r.item_id) for r in dataset.interactions.itertuples() if r.weight < 4}
    stores = build_stores(dataset)
    u0 = stores.user_index["u0"]
    liked = {str(stores.item_ids[i]) for i in stores.positive[u0].indices}
    assert liked == {f"m{i}" for i in range(0, 12, 2)}
    assert stores.feedback[u0].nnz == 12  # disliked movies are still seen
    assert (stores.popularity == 3).all()
    held = holdout(dataset, 0.5, seed=1, min_items=2).held
    assert len(held) and not {(r.user_id, r.item_id) for r in held.itertuples()} & low
    # The friend u1 loved the odd movies: those are the only friends' picks u0 gets.
    scope = scope_for(stores, "u0")
    counts, _ = FriendsSignal(True).fit(stores.positive, stores.feedback, stores.friends).score(
        u0, scope.friends, scope.friends_positive())
    assert {str(stores.item_ids[i]) for i in np.flatnonzero(counts)} == {f"m{i}" for i in range(1, 12, 2)}


def test_the_rule_is_a_setting(tmp_path):
    dataset = load_dataset(str(_folder(tmp_path)), rating_threshold=1.0)
    stores = build_stores(dataset)
    assert stores.positive[stores.user_index["u0"]].nnz == 12
    assert dataset.fingerprint() != load_dataset(str(tmp_path)).fingerprint()  # an index of the other rule is stale

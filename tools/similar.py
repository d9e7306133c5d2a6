"""Items similar to a given item: co-occurrence neighbours from behaviour (item-kNN)."""

from __future__ import annotations

from typing import Any

from catalog.stores import Stores
from retrieval.itemknn import ItemKNN


def similar_items(stores: Stores, knn: ItemKNN, item_id: str, limit: int = 10) -> list[dict[str, Any]]:
    idx, sims = knn.similar(stores.item_idx(item_id), limit)
    out = []
    for i, s in zip(idx, sims, strict=True):
        record = stores.item_record(int(i))
        record["cooccurrence"] = round(float(s), 4)
        out.append(record)
    return out

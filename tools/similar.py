"""Items similar to a given item: co-occurrence neighbours from behaviour (item-kNN)."""

from __future__ import annotations

from typing import Any

from catalog.item_edits import require_offered
from catalog.stores import Stores
from retrieval.itemknn import ItemKNN


def similar_items(stores: Stores, knn: ItemKNN, item_id: str, limit: int = 10) -> list[dict[str, Any]]:
    withdrawn = stores.withdrawn
    idx, sims = knn.similar(require_offered(stores, item_id), limit + int(withdrawn.sum()))
    out: list[dict[str, Any]] = []
    for i, s in zip(idx, sims, strict=True):
        if len(out) == limit:
            break
        if withdrawn[i]:
            continue
        record = stores.item_record(int(i))
        record["cooccurrence"] = round(float(s), 4)
        out.append(record)
    return out

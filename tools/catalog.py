"""Item attributes and hard-condition search over the catalog (category, price range, tags)."""

from __future__ import annotations

from typing import Any

import numpy as np

from catalog.constraints import Constraints
from catalog.item_edits import require_offered
from catalog.stores import Stores


def item_attributes(stores: Stores, item_id: str) -> dict[str, Any]:
    """Everything the store knows about one item (raises UnknownItem, also for a withdrawn item)."""
    return stores.item_record(require_offered(stores, item_id))


def search_catalog(stores: Stores, constraints: Constraints, limit: int = 20, sort: str = "popularity") -> list[dict[str, Any]]:
    """Items meeting every hard condition, most popular (or cheapest: ``sort='price'``) first."""
    mask = constraints.mask(stores)
    idx = np.flatnonzero(mask)
    if sort == "price":
        keys = np.nan_to_num(stores.prices[idx], nan=np.inf)
        order = np.lexsort((idx, keys))
    else:
        order = np.lexsort((idx, -stores.popularity[idx]))
    return [stores.item_record(int(i)) for i in idx[order][:limit]]


def known_categories(stores: Stores) -> list[str]:
    return sorted(c for c in set(stores.categories.tolist()) if c)


def known_tags(stores: Stores) -> list[str]:
    return stores.tag_vocab.tolist()

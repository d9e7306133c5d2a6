"""The acting user's own behaviour: recent items and most-weighted items, with attributes.

Reads the user's rows grouped when the stores were built (catalog/user_items.py): no scan of the event
table and no pandas on the request path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from catalog.scope import UserScope


@dataclass
class HistoryEntry:
    item_id: str
    title: str
    category: str
    price: float | None
    kinds: list[str]
    strength: float
    last_seen: str | None


def user_history(scope: UserScope, limit: int = 10, order: str = "recent") -> list[HistoryEntry]:
    """The user's items, most recent first (``order='recent'``) or strongest first (``'weight'``); ties keep
    the item order."""
    stores = scope.stores
    items, kinds, last = scope.own_items()
    if not len(items):
        return []
    feedback = scope.own_feedback()
    strength = np.zeros(len(items))
    by_item = np.argsort(feedback.indices, kind="stable")
    where = np.searchsorted(feedback.indices[by_item], items)
    found = where < len(by_item)
    found[found] = feedback.indices[by_item[where[found]]] == items[found]
    strength[found] = feedback.data[by_item[where[found]]]
    dated = ~np.isnat(last)
    if order == "recent" and dated.any():
        # Latest first (undated last), then strongest; np.lexsort is stable, so ties keep the item order.
        when = np.unique(last.view(np.int64), return_inverse=True)[1]  # NaT is the smallest
        ranked = np.lexsort((-strength, -when))
    else:
        ranked = np.argsort(-strength, kind="stable")
    out = []
    for row in ranked[:limit].tolist():
        i = int(items[row])
        price = stores.prices[i]
        out.append(HistoryEntry(
            item_id=str(stores.item_ids[i]), title=stores.titles[i], category=str(stores.categories[i]),
            price=None if np.isnan(price) else float(price), kinds=stores.user_items.kinds_of(int(kinds[row])),
            strength=round(float(strength[row]), 3),
            last_seen=str(pd.Timestamp(last[row]))[:19] if dated[row] else None,
        ))
    return out

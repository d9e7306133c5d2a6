"""The acting user's own behaviour: recent items and most-weighted items, with attributes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    """The user's items, most recent first (``order='recent'``) or strongest first (``'weight'``)."""
    stores = scope.stores
    events = scope.own_events()
    if events.empty:
        return []
    grouped = events.groupby("i", observed=True).agg(
        kinds=("kind", lambda k: sorted(set(k))), last=("timestamp", "max"), n=("kind", "size"))
    strength = scope.own_feedback()
    strength_of = dict(zip(strength.indices.tolist(), strength.data.tolist(), strict=True))
    grouped["strength"] = [strength_of.get(int(i), 0.0) for i in grouped.index]
    if order == "recent" and grouped["last"].notna().any():
        grouped = grouped.sort_values(["last", "strength"], ascending=[False, False], na_position="last")
    else:
        grouped = grouped.sort_values(["strength"], ascending=False, kind="stable")
    out = []
    for i, row in grouped.head(limit).iterrows():
        price = stores.prices[int(i)]
        out.append(HistoryEntry(
            item_id=str(stores.item_ids[int(i)]), title=str(stores.catalog["title"].iat[int(i)]),
            category=str(stores.categories[int(i)]), price=None if np.isnan(price) else float(price),
            kinds=list(row["kinds"]), strength=round(float(row["strength"]), 3),
            last_seen=None if row["last"] is None or str(row["last"]) == "NaT" else str(row["last"])[:19],
        ))
    return out

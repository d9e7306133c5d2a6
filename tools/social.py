"""What the acting user's friends bought or liked: per item, how many friends and (by privacy level) who."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from catalog.scope import UserScope


@dataclass
class FriendSignal:
    item_id: str
    title: str
    friends_count: int
    friends: list[str]  # empty when the privacy level only allows counts


def friends_purchases(scope: UserScope, limit: int = 10, show_names: bool = True,
                      exclude_own: bool = True) -> list[FriendSignal]:
    stores = scope.stores
    if scope.friends.size == 0:
        return []
    block = scope.friends_positive().tocsc()
    counts = np.diff(block.indptr).copy()
    counts[stores.withdrawn] = 0  # a withdrawn item is never offered
    if exclude_own:
        counts[scope.own_positive().indices] = 0
    items = np.flatnonzero(counts)
    order = np.lexsort((items, -stores.popularity[items], -counts[items]))[:limit]
    names = scope.friend_names() if show_names else []
    out = []
    for i in items[order]:
        who = [names[r] for r in block[:, i].indices] if show_names else []
        out.append(FriendSignal(item_id=str(stores.item_ids[i]), title=str(stores.catalog["title"].iat[i]),
                                friends_count=int(counts[i]), friends=sorted(who)))
    return out

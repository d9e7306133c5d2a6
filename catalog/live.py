"""Live events on top of the index's snapshot: what a user did after the index was built changes that user's
rows at once (history, exclusions, feedback strength, what they bought), and the catalog-wide counters
(popularity, trend), without rebuilding anything.

Every per-user read goes through the acting user's scope (catalog/scope.py), which asks this overlay first:
a user with live events gets rows recomputed exactly as ``build_stores`` computes them, from the user's
snapshot events plus the live ones; every other user reads the snapshot matrices. What is fitted over all
users (item-item similarities, item factors, the fusion model) waits for ``fusionrec index --refresh``.

Writes are serialised by one lock; a user's rows are replaced whole (one dict assignment), so a request
reads either the rows before an event or after it, never half of each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from catalog.user_items import UserItems

if TYPE_CHECKING:
    from catalog.stores import Stores


@dataclass(frozen=True)
class UserRows:
    """One user's rows over the catalog (1 x n_items) and grouped history, as ``Stores`` holds for everyone."""

    feedback: sp.csr_matrix
    positive: sp.csr_matrix
    known: sp.csr_matrix
    last_seen: sp.csr_matrix
    items: UserItems  # one user (row 0)
    version: int  # increases with every live event of this user (keys caches of derived values)


@dataclass
class LiveEvents:
    stores: Stores
    rows: dict[int, UserRows] = field(default_factory=dict)
    applied: int = 0  # live events applied since the snapshot
    last_seq: int = 0  # the highest stored event seq applied (storage/events.py)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._events: pd.DataFrame | None = None  # every live event (columns u, i, kind, weight, timestamp), in order
        self._by_user: tuple[np.ndarray, np.ndarray] | None = None  # snapshot events grouped by user
        self._cache: dict[tuple[int, str], tuple[int, object]] = {}

    def has(self, user: int) -> bool:
        return user in self.rows

    def get(self, user: int) -> UserRows | None:
        return self.rows.get(user)

    def cached(self, user: int, name: str, compute: Callable[[UserRows], Any]) -> Any:
        """``compute(rows)`` for this user's current live rows, computed once per version."""
        rows = self.rows[user]
        hit = self._cache.get((user, name))
        if hit is not None and hit[0] == rows.version:
            return hit[1]
        value = compute(rows)
        self._cache[(user, name)] = (rows.version, value)
        return value

    def _snapshot_events(self, user: int) -> pd.DataFrame:
        stores = self.stores
        if self._by_user is None:
            users = stores.events["u"].to_numpy(np.int64)
            order = np.argsort(users, kind="stable")
            self._by_user = order, np.searchsorted(users[order], np.arange(stores.n_users + 1))
        order, indptr = self._by_user
        return stores.events.iloc[order[indptr[user]:indptr[user + 1]]]

    def _snapshot_rows(self, users: list[int]) -> pd.DataFrame:
        """The snapshot events of these users (in this order)."""
        self._snapshot_events(users[0])  # groups the snapshot once
        assert self._by_user is not None
        order, indptr = self._by_user
        picks = [order[indptr[u]:indptr[u + 1]] for u in users]
        return self.stores.events.iloc[np.concatenate(picks)]

    def apply(self, events: pd.DataFrame, last_seq: int = 0) -> list[int]:
        """Apply events (columns u, i: indices into the stores; kind, weight, timestamp) and return the users
        whose rows changed. Catalog counters change for the items they touch."""
        from catalog.stores import feedback_matrix, last_seen_days  # the same rules as the snapshot

        stores = self.stores
        dataset = stores.dataset
        with self._lock:
            changed = sorted(int(u) for u in pd.unique(events["u"]))
            n_items, k = stores.n_items, len(changed)
            # All changed users at once (one pandas pass over their events, not one per user): user j of the
            # batch is row j of each matrix.
            new = events[["u", "i", "kind", "weight", "timestamp"]]
            self._events = new.reset_index(drop=True) if self._events is None else \
                pd.concat([self._events, new], ignore_index=True)
            live = self._events[self._events["u"].isin(changed).to_numpy()]
            mine = pd.concat([self._snapshot_rows(changed), live], ignore_index=True)
            mine["u"] = pd.Series(np.arange(k), index=changed).reindex(mine["u"].to_numpy()).to_numpy()
            feedback = feedback_matrix(mine, k, n_items, dataset.kind_weights)
            is_pos = dataset.positive_mask(mine)
            pos = mine.loc[is_pos, ["u", "i"]].drop_duplicates()
            positive = _rows(pos["u"].to_numpy(np.int64), pos["i"].to_numpy(np.int64), k, n_items)
            kn = mine.loc[~mine["kind"].isin(dataset.browse_kinds), ["u", "i"]].drop_duplicates()
            known = _rows(kn["u"].to_numpy(np.int64), kn["i"].to_numpy(np.int64), k, n_items).maximum(positive).tocsr()
            days = last_seen_days(mine["timestamp"], stores.start)
            last = pd.Series(days).groupby([mine["u"].to_numpy(), mine["i"].to_numpy()]).max()
            last = last[last > 0]
            last_seen = sp.csr_matrix((last.to_numpy(np.float32), (last.index.get_level_values(0).to_numpy(np.int64),
                                                                    last.index.get_level_values(1).to_numpy(np.int64))),
                                      shape=(k, n_items))
            items = UserItems.build(mine, k, stores.user_items.kind_names)
            for j, u in enumerate(changed):
                before = self.rows.get(u)
                old_positive = (before.positive if before else stores.positive[u]).indices
                version = (before.version + 1) if before else 1
                row_positive = _row_of(positive, j)
                self.rows[u] = UserRows(_row_of(feedback, j), row_positive, _row_of(known, j), _row_of(last_seen, j),
                                        _one(items, j), version)
                # Catalog counters: one more user with a positive interaction; fresh positives count fully in the
                # trend (they are not decayed again until the next refresh).
                stores.popularity[np.setdiff1d(row_positive.indices, old_positive)] += 1
            fresh = events[dataset.positive_mask(events)]
            if len(fresh):
                stores.trend += np.bincount(fresh["i"].to_numpy(np.int64), weights=_decay(stores, fresh["timestamp"]),
                                            minlength=n_items)[: len(stores.trend)]
            self.applied += len(events)
            self.last_seq = max(self.last_seq, last_seq)
        return changed

    def apply_stored(self, frame: pd.DataFrame) -> list[int]:
        """Apply stored events (storage/events.py: user_id, item_id, kind, weight, timestamp, seq); rows whose user
        or item the stores do not know are skipped (they were checked when stored)."""
        stores = self.stores
        if frame.empty:
            return []
        u = frame["user_id"].astype(str).map(stores.user_index)
        i = frame["item_id"].astype(str).map(stores.item_index)
        ok = (u.notna() & i.notna()).to_numpy()
        events = pd.DataFrame({"u": u[ok].astype(np.int64).to_numpy(), "i": i[ok].astype(np.int64).to_numpy(),
                               "kind": frame["kind"].astype(str).to_numpy()[ok],
                               "weight": frame["weight"].to_numpy(float)[ok],
                               "timestamp": pd.to_datetime(frame["timestamp"]).to_numpy()[ok]})
        return self.apply(events, int(frame["seq"].max()) if "seq" in frame else 0)

    def on_catalog_change(self) -> None:
        """The catalog grew: widen every live row to the new number of items (new items have no behaviour)."""
        with self._lock:
            n_items = self.stores.n_items
            for u, r in list(self.rows.items()):
                for m in (r.feedback, r.positive, r.known, r.last_seen):
                    m.resize((1, n_items))
                self.rows[u] = r


def _rows(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(items), np.float32), (users, items)), shape=(n_users, n_items))
    m.sort_indices()
    return m


def _row_of(m: sp.csr_matrix, j: int) -> sp.csr_matrix:
    """Row j of a CSR matrix as a 1 x n CSR matrix (its own arrays), without scipy's slicing machinery."""
    s, e = m.indptr[j], m.indptr[j + 1]
    return sp.csr_matrix((m.data[s:e].copy(), m.indices[s:e].copy(), np.array([0, e - s], m.indptr.dtype)),
                         shape=(1, m.shape[1]))


def _one(items: UserItems, j: int) -> UserItems:
    """User j's rows of a grouped history, as a history of one user (row 0)."""
    s = items.rows(j)
    return UserItems(np.array([0, s.stop - s.start]), items.items[s], items.kinds[s], items.last[s], items.kind_names)


def _decay(stores: Stores, stamps: pd.Series) -> np.ndarray:
    """The trend weight of positive events at these times: halved every half-life before the data's newest time;
    an undated event weighs 0, as in ``build_stores`` (Last.fm's listens)."""
    if stores.now is None:
        return np.ones(len(stamps))
    age = ((stores.now - pd.to_datetime(stamps)).dt.total_seconds() / 86400.0).clip(lower=0).fillna(np.inf).to_numpy()
    return np.exp(-np.log(2) * age / stores.trend_half_life_days)

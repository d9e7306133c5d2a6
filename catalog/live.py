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
        self._events: dict[int, pd.DataFrame] = {}  # per user, the live events (columns u, i, kind, weight, timestamp)
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

    def apply(self, events: pd.DataFrame, last_seq: int = 0) -> list[int]:
        """Apply events (columns u, i: indices into the stores; kind, weight, timestamp) and return the users
        whose rows changed. Catalog counters change for the items they touch."""
        from catalog.stores import feedback_matrix, last_seen_days  # the same rules as the snapshot

        stores = self.stores
        dataset = stores.dataset
        with self._lock:
            changed = sorted(int(u) for u in pd.unique(events["u"]))
            n_items = stores.n_items
            for u in changed:
                new = events[events["u"] == u]
                before = self.rows.get(u)
                old_positive = set((before.positive if before else stores.positive[u]).indices.tolist())
                live = pd.concat([self._events.get(u, new.iloc[:0]), new], ignore_index=True)
                self._events[u] = live
                mine = pd.concat([self._snapshot_events(u), live], ignore_index=True).assign(u=0)
                feedback = feedback_matrix(mine, 1, n_items, dataset.kind_weights)
                is_pos = dataset.positive_mask(mine)
                pos_items = np.unique(mine.loc[is_pos, "i"].to_numpy(np.int64))
                positive = _row(pos_items, n_items)
                known_items = np.unique(mine.loc[~mine["kind"].isin(dataset.browse_kinds), "i"].to_numpy(np.int64))
                known = _row(np.union1d(known_items, pos_items), n_items)
                days = last_seen_days(mine["timestamp"], stores.start)
                last = pd.Series(days).groupby(mine["i"].to_numpy()).max()
                last = last[last > 0]
                last_seen = sp.csr_matrix((last.to_numpy(np.float32), (np.zeros(len(last), np.int64), last.index.to_numpy())),
                                          shape=(1, n_items))
                items = UserItems.build(mine, 1, stores.user_items.kind_names)
                version = (before.version + 1) if before else 1
                self.rows[u] = UserRows(feedback, positive, known, last_seen, items, version)
                # Catalog counters: one more user with a positive interaction; fresh positives count fully in the
                # trend (they are not decayed again until the next refresh).
                for i in sorted(set(pos_items.tolist()) - old_positive):
                    stores.popularity[i] += 1
                fresh = new[dataset.positive_mask(new)]
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


def _row(items: np.ndarray, n_items: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(items), np.float32), (np.zeros(len(items), np.int64), items)), shape=(1, n_items))


def _decay(stores: Stores, stamps: pd.Series) -> np.ndarray:
    """The trend weight of positive events at these times: halved every half-life before the data's newest time;
    an undated event weighs 0, as in ``build_stores`` (Last.fm's listens)."""
    if stores.now is None:
        return np.ones(len(stamps))
    age = ((stores.now - pd.to_datetime(stamps)).dt.total_seconds() / 86400.0).clip(lower=0).fillna(np.inf).to_numpy()
    return np.exp(-np.log(2) * age / stores.trend_half_life_days)

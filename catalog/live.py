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
    """One user's rows over the catalog (1 x n_items) and grouped history, as ``Stores`` holds for everyone: row
    ``k`` of matrices built for a batch of users (sliced when read)."""

    block: tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]  # feedback, positive, known, last_seen
    k: int
    items: UserItems  # one user (row 0)
    version: int  # increases with every live event of this user (keys caches of derived values)

    @property
    def feedback(self) -> sp.csr_matrix:
        return _row_of(self.block[0], self.k)

    @property
    def positive(self) -> sp.csr_matrix:
        return _row_of(self.block[1], self.k)

    @property
    def known(self) -> sp.csr_matrix:
        return _row_of(self.block[2], self.k)

    @property
    def last_seen(self) -> sp.csr_matrix:
        return _row_of(self.block[3], self.k)


@dataclass
class LiveEvents:
    stores: Stores
    rows: dict[int, UserRows] = field(default_factory=dict)
    applied: int = 0  # live events applied since the snapshot
    last_seq: int = 0  # the highest stored event seq applied (storage/events.py)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._catch_up = threading.Lock()  # one reader of the stored events at a time (nothing applied twice)
        self._live: pd.DataFrame | None = None  # every live event applied (columns u, i, kind, weight, timestamp)
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

    def _snapshot_events(self, users: list[int]) -> pd.DataFrame:
        """The snapshot's events of these users (one take from the event table, grouped by user once)."""
        stores = self.stores
        if self._by_user is None:
            column = stores.events["u"].to_numpy(np.int64)
            order = np.argsort(column, kind="stable")
            self._by_user = order, np.searchsorted(column[order], np.arange(stores.n_users + 1))
        order, indptr = self._by_user
        rows = np.concatenate([order[indptr[u]:indptr[u + 1]] for u in users]) if users else np.zeros(0, np.int64)
        return stores.events.iloc[rows]

    def apply(self, events: pd.DataFrame, last_seq: int = 0) -> list[int]:
        """Apply events (columns u, i: indices into the stores; kind, weight, timestamp) and return the users
        whose rows changed. Catalog counters change for the items they touch. The changed users' rows are
        rebuilt together, in one vectorised pass over their snapshot and live events."""
        from catalog.stores import feedback_matrix, last_seen_days  # the same rules as the snapshot

        stores = self.stores
        dataset = stores.dataset
        with stores.lock.reading(), self._lock:  # the catalog's width holds still while the rows are built
            changed = sorted(int(u) for u in pd.unique(events["u"]))
            if not changed:
                return []
            n_items, m = stores.n_items, len(changed)
            old_positive = sp.vstack([r.positive if (r := self.rows.get(u)) else stores.positive[u] for u in changed],
                                     format="csr")
            cols = ["u", "i", "kind", "weight", "timestamp"]
            self._live = pd.concat([self._live, events[cols]], ignore_index=True) if self._live is not None \
                else events[cols].reset_index(drop=True)
            mine = pd.concat([self._snapshot_events(changed), self._live[self._live["u"].isin(changed)]],
                             ignore_index=True)
            mine["u"] = np.searchsorted(np.array(changed), mine["u"].to_numpy(np.int64))  # 0..m-1, as ``changed``
            feedback = feedback_matrix(mine, m, n_items, dataset.kind_weights)
            is_pos = dataset.positive_mask(mine)
            positive = _rows(mine.loc[is_pos], m, n_items)
            known = _rows(mine.loc[~mine["kind"].isin(dataset.browse_kinds)], m, n_items).maximum(positive).tocsr()
            day = last_seen_days(mine["timestamp"], stores.start)
            last = mine[["u", "i"]].assign(day=day).groupby(["u", "i"])["day"].max().reset_index()
            last = last[last["day"] > 0]
            last_seen = sp.csr_matrix((last["day"].to_numpy(np.float32), (last["u"], last["i"])), shape=(m, n_items))
            items = UserItems.build(mine, m, stores.user_items.kind_names)
            block = (feedback, positive, known, last_seen)
            for k, u in enumerate(changed):
                before = self.rows.get(u)
                self.rows[u] = UserRows(block, k, items.one(k), (before.version + 1) if before else 1)
            # Catalog counters: one more user with a positive interaction per new (user, item) positive; fresh
            # positives count fully in the trend (they are not decayed again until the next refresh).
            gained = (positive - positive.multiply(old_positive > 0)).tocsr()
            gained.eliminate_zeros()
            np.add.at(stores.popularity, gained.indices, 1)
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

    def catch_up(self, read_after: Callable[[int], pd.DataFrame]) -> list[int]:
        """Apply the stored events after the last one applied here (``read_after(seq)``: storage/events.py), in order,
        once each, whichever process or thread stored them; returns the users whose rows changed."""
        with self._catch_up:
            frame = read_after(self.last_seq)
            if frame.empty:
                return []
            changed = self.apply_stored(frame)
            self.last_seq = max(self.last_seq, int(frame["seq"].max()))  # rows naming unknown users count as read
            return changed

    def on_catalog_change(self) -> None:
        """The catalog grew: widen every live row to the new number of items (new items have no behaviour)."""
        with self._lock:
            n_items = self.stores.n_items
            widened: dict[int, tuple[sp.csr_matrix, ...]] = {}
            for u, r in list(self.rows.items()):
                if r.block[0].shape[1] != n_items:
                    key = id(r.block)
                    if key not in widened:
                        widened[key] = tuple(sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], n_items))
                                             for m in r.block)
                    self.rows[u] = UserRows(widened[key], r.k, r.items, r.version)  # type: ignore[arg-type]


def _row_of(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Row ``k`` of a CSR matrix as a 1 x n CSR matrix (without scipy's general indexing)."""
    a, b = matrix.indptr[k], matrix.indptr[k + 1]
    return sp.csr_matrix((matrix.data[a:b].copy(), matrix.indices[a:b].copy(), np.array([0, b - a])),
                         shape=(1, matrix.shape[1]))


def _rows(events: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """1 where a user has an event with an item (users x items)."""
    pairs = events[["u", "i"]].drop_duplicates()
    return sp.csr_matrix((np.ones(len(pairs), np.float32), (pairs["u"].to_numpy(), pairs["i"].to_numpy())),
                         shape=(n_users, n_items))


def _decay(stores: Stores, stamps: pd.Series) -> np.ndarray:
    """The trend weight of positive events at these times: halved every half-life before the data's newest time;
    an undated event weighs 0, as in ``build_stores`` (Last.fm's listens)."""
    if stores.now is None:
        return np.ones(len(stamps))
    age = ((stores.now - pd.to_datetime(stamps)).dt.total_seconds() / 86400.0).clip(lower=0).fillna(np.inf).to_numpy()
    return np.exp(-np.log(2) * age / stores.trend_half_life_days)

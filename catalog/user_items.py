"""Each user's (item, kinds of interaction, last time) rows, grouped once when the stores are built, so a
request reads one user's slice instead of scanning and grouping the whole event table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class UserItems:
    indptr: np.ndarray  # user u's rows are indptr[u]:indptr[u + 1]
    items: np.ndarray  # item index per row, ascending within a user
    kinds: np.ndarray  # bit k set: the user had an event of kind_names[k] with the item
    last: np.ndarray  # datetime64[ns], the latest event (NaT when undated)
    kind_names: tuple[str, ...]  # sorted

    @classmethod
    def build(cls, events: pd.DataFrame, n_users: int, kind_names: tuple[str, ...] | None = None) -> UserItems:
        """``kind_names``: the kinds the bits stand for (default: the kinds in ``events``); must hold every
        kind in ``events``."""
        users = events["u"].to_numpy(np.int64)
        items = events["i"].to_numpy(np.int64)
        kinds = events["kind"].astype(str).to_numpy()
        if kind_names is None:
            names, codes = np.unique(kinds, return_inverse=True)
        else:
            names = np.array(sorted(set(kind_names)), dtype=object)
            codes = np.searchsorted(names.astype(str), kinds) if len(kinds) else np.zeros(0, np.int64)
        if len(names) > 63:
            raise ValueError(f"{len(names)} kinds of interaction; at most 63 are supported")
        stamps = pd.to_datetime(events["timestamp"]).to_numpy("datetime64[ns]").view(np.int64)  # NaT = min int64
        order = np.lexsort((items, users))
        users, items, stamps = users[order], items[order], stamps[order]
        bits = np.left_shift(np.int64(1), codes[order].astype(np.int64))
        starts = np.flatnonzero(np.r_[True, (users[1:] != users[:-1]) | (items[1:] != items[:-1])]) \
            if len(users) else np.zeros(0, np.int64)
        if len(starts):
            kinds = np.bitwise_or.reduceat(bits, starts)
            last = np.maximum.reduceat(stamps, starts)
        else:
            kinds, last = np.zeros(0, np.int64), np.zeros(0, np.int64)
        indptr = np.searchsorted(users[starts], np.arange(n_users + 1), side="left")
        return cls(indptr=indptr, items=items[starts], kinds=kinds, last=last.view("datetime64[ns]"),
                   kind_names=tuple(str(n) for n in names))

    def one(self, user: int) -> UserItems:
        """User ``user``'s rows alone, as user 0 of a one-user index."""
        rows = self.rows(user)
        return UserItems(indptr=np.array([0, rows.stop - rows.start]), items=self.items[rows], kinds=self.kinds[rows],
                         last=self.last[rows], kind_names=self.kind_names)

    def rows(self, user: int) -> slice:
        return slice(int(self.indptr[user]), int(self.indptr[user + 1]))

    def kinds_of(self, mask: int) -> list[str]:
        return [name for bit, name in enumerate(self.kind_names) if mask >> bit & 1]

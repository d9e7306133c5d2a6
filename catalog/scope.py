"""The privacy boundary: everything a tool reads for a turn goes through the acting user's scope.

A scope is created from the session's authenticated user (never from message text). It hands out the
acting user's own rows and *aggregates* over that user's friends; any other user's data is out of
reach. Every read is recorded in an audit list so tests can prove the boundary holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from catalog.stores import Stores


class ScopeViolation(PermissionError):
    pass


@dataclass
class UserScope:
    stores: Stores
    user: int
    friends: np.ndarray  # friend user indices
    audit: list[tuple[str, int]] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return str(self.stores.user_ids[self.user])

    def __post_init__(self) -> None:
        self._members = frozenset([self.user, *self.friends.tolist()])

    def allowed(self, user: int) -> bool:
        return user in self._members

    def _record(self, what: str, users: np.ndarray | list[int]) -> None:
        ids = [int(u) for u in np.atleast_1d(users)]
        outside = [u for u in ids if u not in self._members]
        if outside:
            raise ScopeViolation(f"{what}: user index {outside[0]} is outside the acting user's scope")
        self.audit.extend((what, u) for u in ids)

    def own_feedback(self) -> sp.csr_matrix:
        self._record("feedback", [self.user])
        live = self.stores.live.get(self.user)
        return live.feedback if live else self.stores.feedback[self.user]

    def own_positive(self) -> sp.csr_matrix:
        self._record("positive", [self.user])
        live = self.stores.live.get(self.user)
        return live.positive if live else self.stores.positive[self.user]

    def own_known(self) -> sp.csr_matrix:
        """The items the acting user has or knows (any interaction but browsing)."""
        self._record("known", [self.user])
        live = self.stores.live.get(self.user)
        return live.known if live else self.stores.known[self.user]

    def own_last_seen(self) -> sp.csr_matrix:
        self._record("last_seen", [self.user])
        live = self.stores.live.get(self.user)
        return live.last_seen if live else self.stores.last_seen[self.user]

    def own_items(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The acting user's (items, kinds bit masks, last event times), grouped when the stores were built."""
        self._record("events", [self.user])
        live = self.stores.live.get(self.user)
        index, user = (live.items, 0) if live else (self.stores.user_items, self.user)
        rows = index.rows(user)
        return index.items[rows], index.kinds[rows], index.last[rows]

    def friends_positive(self) -> sp.csr_matrix:
        """Rows of the friends' positive matrix (only to be aggregated by tools)."""
        self._record("friends_positive", self.friends)
        live = self.stores.live
        if not any(live.has(int(f)) for f in self.friends):
            return self.stores.positive[self.friends]
        return sp.vstack([r.positive if (r := live.get(int(f))) else self.stores.positive[int(f)]
                          for f in self.friends], format="csr")

    def friend_names(self) -> list[str]:
        self._record("friend_names", self.friends)
        return [str(self.stores.user_names[f]) for f in self.friends]


def scope_for(stores: Stores, user_id: str) -> UserScope:
    """Scope of an authenticated user; raises UnknownUser for ids not in the store."""
    user = stores.user_idx(user_id)
    friends = stores.friends[user].indices.copy()
    friends.sort()
    return UserScope(stores=stores, user=user, friends=friends)

"""Candidate sources that the shipped fusion does *not* use, for `fusionrec probe-sources` only.

Each is a well-known recommender that scores the whole catalog for one user, fit on one split's
stores (never on held-out pairs) from the binary user x item feedback (every kind of interaction, as
ALS and item-kNN see it): user-kNN, RP3beta, EASE, and the user's own tag vocabulary matched
against the items' tags. They stay here, outside `retrieval/`, until a probe shows that one is worth
its cost in the product (see README, "Benchmarks").
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from catalog.stores import Stores
from evals.baselines import Baseline, param_grid
from retrieval.itemknn import prune_columns


class ExtraSource(Baseline):
    """A baseline (tuned by the same `tune_baselines`) that needs no item embeddings."""

    @abstractmethod
    def fit(self, stores: Stores, embeddings: np.ndarray | None = None) -> ExtraSource: ...

    @classmethod
    def available(cls, stores: Stores) -> bool:
        return True


def _binary(m: sp.csr_matrix) -> sp.csr_matrix:
    out = (m > 0).astype(np.float64).tocsr()
    out.eliminate_zeros()
    return out


def _row_normalised(m: sp.csr_matrix, norm: str) -> sp.csr_matrix:
    m = m.tocsr().astype(np.float64)
    if norm == "l1":
        d = np.asarray(m.sum(axis=1)).ravel()
    else:
        d = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    return (sp.diags(inv) @ m).tocsr()


def _off_diagonal(m: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(m)
    out.setdiag(0)
    out.eliminate_zeros()
    return out


def _dense(row: sp.spmatrix) -> np.ndarray:
    return np.asarray(row.todense()).ravel()


class UserKNN(ExtraSource):
    """Cosine similarity between users' interaction sets (all kinds, like ALS and item-kNN); a user's score is the similarity-weighted sum of
    the k nearest users' items."""


    def fit(self, stores: Stores, embeddings: np.ndarray | None = None) -> UserKNN:
        x = _binary(stores.feedback)
        xn = _row_normalised(x, "l2")
        self.neighbours = prune_columns(_off_diagonal(xn @ xn.T), int(self.params["k"]))
        self.x = x
        return self

    def score(self, user: int) -> np.ndarray:
        return _dense(self.neighbours[user] @ self.x)


class RP3Beta(ExtraSource):
    """Three-step random walk user -> item -> user -> item, item j's arrival probability divided by
    popularity(j)^beta, top-k per item (Paudel et al., 2016)."""


    def fit(self, stores: Stores, embeddings: np.ndarray | None = None) -> RP3Beta:
        x = _binary(stores.feedback)
        p_ui = _row_normalised(x, "l1")
        p_iu = _row_normalised(x.T.tocsr(), "l1")
        w = _off_diagonal(p_iu @ p_ui)
        pop = np.asarray(x.sum(axis=0)).ravel()
        penalty = np.divide(1.0, pop ** float(self.params["beta"]), out=np.zeros_like(pop), where=pop > 0)
        w = (w @ sp.diags(penalty)).tocsr()
        self.walk = prune_columns(w, int(self.params["k"]))
        self.p_ui = p_ui
        return self

    def score(self, user: int) -> np.ndarray:
        return _dense(self.p_ui[user] @ self.walk)


class EASE(ExtraSource):
    """Closed-form linear item-item model B = I - P / diag(P), P = (X'X + lambda I)^-1 (Steck, 2019),
    over the ``max_items`` most popular items (dense: max_items^2 floats)."""


    def fit(self, stores: Stores, embeddings: np.ndarray | None = None) -> EASE:
        x = _binary(stores.feedback)
        pop = np.asarray(x.sum(axis=0)).ravel()
        keep = np.flatnonzero(pop >= 2)  # an item seen once cannot co-occur with itself elsewhere
        limit = int(self.params.get("max_items", 12000))
        if len(keep) > limit:
            keep = np.sort(keep[np.lexsort((keep, -pop[keep]))[:limit]])
        xk = x[:, keep]
        gram = (xk.T @ xk).toarray()
        gram[np.diag_indices_from(gram)] += float(self.params["lambda"])
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
        self.keep, self.b, self.xk, self.n_items = keep, b.astype(np.float32), xk.tocsr(), stores.n_items
        return self

    def score(self, user: int) -> np.ndarray:
        out = np.zeros(self.n_items, np.float64)
        row = self.xk[user]
        if row.nnz:
            out[self.keep] = self.b[row.indices].sum(axis=0)
        return out


class UserTags(ExtraSource):
    """TF-IDF cosine between the tags the user applied (tag events) and the tags others applied to
    each item. Only for data with tag events (Last.fm)."""


    @classmethod
    def available(cls, stores: Stores) -> bool:
        events = stores.dataset.tag_events
        return events is not None and not events.empty

    def fit(self, stores: Stores, embeddings: np.ndarray | None = None) -> UserTags:
        events = stores.dataset.tag_events
        assert events is not None
        events = events[events["user_id"].astype(str).isin(stores.user_index)
                        & events["item_id"].astype(str).isin(stores.item_index)]
        tags = pd.Index(sorted(events["tag"].astype(str).unique()))
        u = events["user_id"].astype(str).map(stores.user_index).to_numpy()
        i = events["item_id"].astype(str).map(stores.item_index).to_numpy()
        t = tags.get_indexer(events["tag"].astype(str))
        ones = np.ones(len(events))
        self.users = _tfidf(sp.csr_matrix((ones, (u, t)), shape=(stores.n_users, len(tags))))
        self.items_t = _tfidf(sp.csr_matrix((ones, (i, t)), shape=(stores.n_items, len(tags)))).T.tocsr()
        return self

    def score(self, user: int) -> np.ndarray:
        return _dense(self.users[user] @ self.items_t)


def _tfidf(counts: sp.csr_matrix) -> sp.csr_matrix:
    m = counts.tocsr().astype(np.float64)
    df = np.asarray((m > 0).sum(axis=0)).ravel()
    m = m.multiply(np.log((m.shape[0] + 1) / (df + 1)) + 1).tocsr()
    m.data = np.log1p(m.data)
    return _row_normalised(m, "l2")


def extra_source_grids(quick: bool) -> dict[str, tuple[type[ExtraSource], list[dict[str, Any]]]]:
    """Each source's hyper-parameter grid, tuned on VALIDATION like every baseline."""
    if quick:
        return {"user-knn": (UserKNN, param_grid(k=[50])), "rp3beta": (RP3Beta, param_grid(beta=[0.3], k=[200])),
                "ease": (EASE, param_grid(**{"lambda": [300.0]})), "user-tags": (UserTags, [{}])}
    return {
        "user-knn": (UserKNN, param_grid(k=[25, 50, 100, 200])),
        "rp3beta": (RP3Beta, param_grid(beta=[0.2, 0.35, 0.5], k=[100, 400])),
        "ease": (EASE, param_grid(**{"lambda": [30.0, 100.0, 300.0, 1000.0]})),
        "user-tags": (UserTags, [{}]),
    }

"""Run the sources for one user, union their top candidates, and attach per-source evidence features.

Every source scores the whole catalog as one dense vector (vectorised, a few ms on 17k items); the
candidate pool is the union of each source's top ``per_source`` items after hard constraints and
exclusions; features for the pool feed the learned fusion (agent/fusion.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.request import RecommendRequest
from retrieval.bundle import SourceModels
from tools.scope import UserScope

# The per-source evidence every candidate carries. Order matters: it is the fusion model's input.
SOURCES = ("cf", "knn", "social_count", "social_weighted", "content", "popularity")
FEATURES = (
    "cf", "cf_norm", "cf_rank",
    "knn", "knn_norm", "knn_rank",
    "social_count", "social_share", "social_weighted", "social_rank",
    "content", "content_rank",
    "popularity", "popularity_rank", "trend",
)


@dataclass
class SourceScores:
    """Dense per-item scores of every source for one user (and optional query / anchors)."""

    cf: np.ndarray
    knn: np.ndarray
    social_count: np.ndarray
    social_weighted: np.ndarray
    content: np.ndarray
    popularity: np.ndarray
    trend: np.ndarray
    n_friends: int
    query: np.ndarray | None = None
    anchor: np.ndarray | None = None


@dataclass
class CandidatePool:
    items: np.ndarray  # item indices
    features: np.ndarray  # len(items) x len(FEATURES)
    scores: SourceScores
    query_sim: np.ndarray | None  # per candidate, when a query was given
    anchor_sim: np.ndarray | None
    allowed: np.ndarray  # mask over all items: constraints and exclusions


def compute_source_scores(scope: UserScope, models: SourceModels, query_vector: np.ndarray | None = None,
                          anchor_items: list[int] | None = None, use_friends: bool = True) -> SourceScores:
    stores = scope.stores
    row = scope.own_feedback()
    if use_friends and scope.friends.size:
        counts, weighted = models.social.score(scope.user, scope.friends, scope.friends_positive())
    else:
        counts = weighted = np.zeros(stores.n_items, np.float32)
    query = models.content.similarity_to(query_vector) if query_vector is not None else None
    anchor = None
    if anchor_items:
        anchors = np.zeros(stores.n_items, np.float32)
        for item in anchor_items:
            # "more like this one": text similarity plus co-occurrence neighbourhood of the anchor item
            anchors = np.maximum(anchors, models.content.items @ models.content.items[item]
                                 + _norm(models.knn.neighbour_vector(item)))
        anchor = anchors
    return SourceScores(
        cf=models.mf.score(scope.user),
        knn=models.knn.score(row),
        social_count=counts.astype(np.float32),
        social_weighted=weighted.astype(np.float32),
        content=models.content.score(row),
        popularity=np.log1p(stores.popularity).astype(np.float32),
        trend=np.log1p(stores.trend).astype(np.float32),
        n_friends=int(scope.friends.size) if use_friends else 0,
        query=query,
        anchor=anchor,
    )


def _rank_feature(values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """1/log2(2 + rank) of each candidate within the pool, ties broken by item index."""
    order = np.lexsort((items, -values))
    rank = np.empty(len(values))
    rank[order] = np.arange(len(values))
    return 1.0 / np.log2(2.0 + rank)


def _norm(values: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    return values / peak if peak > 0 else values


def feature_matrix(s: SourceScores, items: np.ndarray) -> np.ndarray:
    cf, knn, sc, sw, ct, pop = (s.cf[items], s.knn[items], s.social_count[items], s.social_weighted[items],
                                s.content[items], s.popularity[items])
    cols = [
        cf, _norm(cf), _rank_feature(cf, items),
        knn, _norm(knn), _rank_feature(knn, items),
        np.log1p(sc), sc / max(s.n_friends, 1), sw, _rank_feature(sw + 1e-3 * sc, items),
        ct, _rank_feature(ct, items),
        pop, _rank_feature(pop, items), s.trend[items],
    ]
    return np.column_stack(cols).astype(np.float64)


def allowed_mask(scope: UserScope, request: RecommendRequest) -> np.ndarray:
    stores = scope.stores
    allowed = request.constraints.mask(stores)
    seen = scope.own_positive() if request.exclude_seen == "positive" else scope.own_feedback()
    allowed[seen.indices] = False
    for item_id in request.exclude_items:
        idx = stores.item_index.get(str(item_id))
        if idx is not None:
            allowed[idx] = False
    return allowed


def top_n(values: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n best allowed items (ties by item index), without sorting the whole catalog."""
    idx = np.flatnonzero(allowed)
    if idx.size == 0 or n <= 0:
        return idx[:0]
    vals = values[idx]
    if idx.size > n:
        # Take everything tied with the n-th value so that tie-breaking by index stays exact.
        part = np.argpartition(-vals, n - 1)[:n]
        threshold = vals[part].min()
        idx, vals = idx[vals >= threshold], vals[vals >= threshold]
    order = np.lexsort((idx, -vals))[:n]
    return idx[order]


def build_pool(scope: UserScope, models: SourceModels, request: RecommendRequest, per_source: int,
               query_vector: np.ndarray | None = None, extra_items: list[int] | None = None) -> CandidatePool:
    stores = scope.stores
    anchors = [stores.item_index[i] for i in request.like_items if i in stores.item_index]
    scores = compute_source_scores(scope, models, query_vector, anchors, request.use_friends)
    allowed = allowed_mask(scope, request)
    sources = [scores.cf, scores.knn, scores.social_weighted + 1e-3 * scores.social_count, scores.content,
               scores.popularity]
    if scores.query is not None:
        sources.append(scores.query)
    if scores.anchor is not None:
        sources.append(scores.anchor)
    parts = [top_n(v, allowed, per_source) for v in sources]
    if extra_items:
        extra = np.array([i for i in extra_items if allowed[i]], dtype=np.int64)
        parts.append(extra)
    items = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    return CandidatePool(
        items=items,
        features=feature_matrix(scores, items),
        scores=scores,
        query_sim=scores.query[items] if scores.query is not None else None,
        anchor_sim=scores.anchor[items] if scores.anchor is not None else None,
        allowed=allowed,
    )

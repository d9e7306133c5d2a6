"""Run the sources for one user, union their top candidates, and attach per-source evidence features.

Every source scores the whole catalog as one dense vector (vectorised, a few ms on 17k items); the
candidate pool is the union of each source's top ``per_source`` items after hard constraints and
exclusions; features for the pool feed the learned fusion (agent/fusion.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from catalog.scope import UserScope
from catalog.stores import Stores
from fusion.request import RecommendRequest
from retrieval.bundle import SourceModels
from retrieval.registry import REGISTRY

# The per-source evidence every candidate carries. Order matters: it is the fusion model's input.
# Each behavioural source is seen five ways: raw; z-score over the user's allowed items (scale-free
# across users and refits); share of the user's best score; 1/log2(2 + rank) and log(1 + rank) among all
# the user's allowed items.
SCORED = ("cf", "knn", "content", "social_weighted")
VIEWS = ("raw", "z", "norm", "rank", "logrank")
REGISTERED = tuple(entry.name for entry in REGISTRY)  # retrieval/registry.py: seen the same five ways
FEATURES = (
    *(f"{name}_{kind}" for name in SCORED for kind in VIEWS),
    "social_count", "social_share", "popularity", "popularity_rank", "trend",
    "social_share_x_friends", "cf_z_x_history", "knn_z_x_history",
    *(f"{name}_{kind}" for name in REGISTERED for kind in VIEWS),
)
# A single source served on its own (fusion/selection.py) ranks the pool by this one column, which is its
# dense score: the pool holds each source's top ``per_source`` items, so its top of the pool is its top.
SINGLE_SOURCES = {"mf-als": "cf_raw", "item-knn": "knn_raw", "social": "social_weighted_raw",
                  "content": "content_raw", "popularity": "popularity", **{n: f"{n}_raw" for n in REGISTERED}}


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
    n_history: int = 0
    query: np.ndarray | None = None
    anchor: np.ndarray | None = None
    registered: dict[str, np.ndarray] = field(default_factory=dict)  # per registered source, in REGISTERED order


@dataclass
class CandidatePool:
    items: np.ndarray  # item indices
    sort_values: np.ndarray | None  # per candidate, the exact sort key when the request sorts (higher first)
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
            neighbours = models.knn.neighbour_vector(item)
            anchors = np.maximum(anchors, models.content.items @ models.content.items[item]
                                 + _norm(neighbours, neighbours))
        anchor = anchors
    return SourceScores(
        cf=_cf_scores(scope, models),
        knn=models.knn.score(row),
        social_count=counts.astype(np.float32),
        social_weighted=weighted.astype(np.float32),
        content=models.content.score(row),
        popularity=np.log1p(stores.popularity).astype(np.float32),
        trend=np.log1p(stores.trend).astype(np.float32),
        n_friends=int(scope.friends.size) if use_friends else 0,
        n_history=int(row.nnz),
        query=query,
        anchor=anchor,
        registered={name: models.registered[name].score(row) for name in REGISTERED},
    )


def _cf_scores(scope: UserScope, models: SourceModels) -> np.ndarray:
    """ALS scores; a user with live events gets a factor folded in from the live feedback row (item factors
    stay as fitted until the next refresh)."""
    live = scope.stores.live
    if not live.has(scope.user):
        return models.mf.score(scope.user)
    factor = live.cached(scope.user, "als", lambda rows: models.mf.fold_in(rows.feedback, scope.stores.feedback))
    return models.mf.score_factor(factor)


def _rank_feature(full: np.ndarray, items: np.ndarray, base: np.ndarray) -> np.ndarray:
    """1/log2(2 + rank) of each candidate among the ``base`` pool's items (the others of them ranked higher,
    ties broken by item index); a candidate outside the base pool is ranked as if it joined it."""
    ref = full[base]
    higher = (ref[None, :] > full[items][:, None]) | ((ref[None, :] == full[items][:, None]) & (base[None, :] < items[:, None]))
    return 1.0 / np.log2(2.0 + higher.sum(axis=1))


def _norm(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``values`` as a share of the largest magnitude in ``reference``."""
    peak = float(np.max(np.abs(reference))) if reference.size else 0.0
    return values / peak if peak > 0 else values


def _z(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    ref = values[allowed] if allowed.any() else values
    std = float(ref.std())
    return (values - float(ref.mean())) / std if std > 1e-9 else np.zeros_like(values)


def _rank_among(full: np.ndarray, allowed: np.ndarray, items: np.ndarray) -> np.ndarray:
    """0-based rank of each candidate among all allowed items (ties share the better rank)."""
    ref = np.sort(full[allowed] if allowed.any() else full)
    return (len(ref) - np.searchsorted(ref, full[items], side="right")).astype(np.float64)


def evidence_columns(full: np.ndarray, allowed: np.ndarray, items: np.ndarray,
                     base: np.ndarray | None = None) -> list[np.ndarray]:
    """The five views of one source's dense scores for the candidates ``items``: raw, z-score over the
    allowed items, share of the best in the ``base`` pool (default: the candidates), 1/log2(2 + rank) and
    log(1 + rank) among the allowed items."""
    values = full[items]
    rank = _rank_among(full, allowed, items)
    reference = values if base is None else full[base]
    return [values, _z(full, allowed)[items], _norm(values, reference), 1.0 / np.log2(2.0 + rank), np.log1p(rank)]


def feature_matrix(s: SourceScores, items: np.ndarray, allowed: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Evidence features of the candidates ``items``. Every feature is measured against what the user could be
    shown with no filter (``allowed``: the unseen items; ``base``: the pool an unfiltered request would have,
    default the candidates themselves), so a filter, a search hit or an explained item never shifts an
    item's features: ranking a filtered set is the unfiltered ranking, restricted."""
    base = items if base is None else base
    cols = []
    z_of = {}
    for name in SCORED:
        views = evidence_columns(getattr(s, name), allowed, items, base)
        z_of[name] = views[1]
        cols += views
    count = s.social_count[items]
    share = count / max(s.n_friends, 1)
    history = np.log1p(s.n_history)
    cols += [np.log1p(count), share, s.popularity[items], _rank_feature(s.popularity, items, base), s.trend[items],
             share * np.log1p(s.n_friends), z_of["cf"] * history, z_of["knn"] * history]
    for name in REGISTERED:
        cols += evidence_columns(s.registered[name], allowed, items, base)
    return np.column_stack(cols).astype(np.float64)


def unseen_mask(scope: UserScope, request: RecommendRequest) -> np.ndarray:
    """The items this user could be shown at all (not already theirs), whatever the request's filters."""
    unseen = scope.stores.offered()  # a withdrawn item is never shown
    if request.exclude_seen != "none":
        seen = scope.own_known() if request.exclude_seen == "known" else (
            scope.own_positive() if request.exclude_seen == "positive" else scope.own_feedback())
        unseen[seen.indices] = False
    return unseen


def allowed_mask(scope: UserScope, request: RecommendRequest) -> np.ndarray:
    stores = scope.stores
    allowed = request.constraints.mask(stores)
    if request.exclude_seen != "none":
        seen = scope.own_known() if request.exclude_seen == "known" else (
            scope.own_positive() if request.exclude_seen == "positive" else scope.own_feedback())
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


def sort_key(stores: Stores, scores: SourceScores, sort: str) -> np.ndarray | None:
    """Per item, the value an exact sort orders by (higher first; NaN: the item has no such value)."""
    if sort == "price_asc":
        return -stores.prices.astype(np.float64)
    if sort == "price_desc":
        return stores.prices.astype(np.float64)
    if sort == "popularity":
        return stores.popularity.astype(np.float64)
    if sort == "friends":
        return scores.social_count.astype(np.float64)
    if sort == "trend":
        return stores.trend.astype(np.float64)
    if sort == "newest":
        return stores.first_seen_days()
    if sort == "rating":
        return stores.mean_rating()
    return None



def build_pool(scope: UserScope, models: SourceModels, request: RecommendRequest, per_source: int,
               query_vector: np.ndarray | None = None, extra_items: list[int] | None = None,
               base_per_source: int | None = None) -> CandidatePool:
    """Candidates for ``request``: the union of each source's best ``per_source`` allowed items (and
    ``extra_items``), with their evidence features measured against the unfiltered pool of
    ``base_per_source`` (default ``per_source``) items per source."""
    stores = scope.stores
    anchors = [stores.item_index[i] for i in request.like_items if i in stores.item_index]
    scores = compute_source_scores(scope, models, query_vector, anchors, request.use_friends)
    allowed = allowed_mask(scope, request)
    sources = [scores.cf, scores.knn, scores.social_weighted + 1e-3 * scores.social_count, scores.content,
               scores.popularity, *scores.registered.values()]
    behavioural = len(sources)  # what an unfiltered pool is made of (query and anchor join when asked)
    if scores.query is not None:
        sources.append(scores.query)
    if scores.anchor is not None:
        sources.append(scores.anchor)
    if request.source == "friends":
        allowed &= scores.social_count > 0  # friends' picks: only what a friend bought
    key = sort_key(stores, scores, request.sort) if request.sort else None
    if key is not None:
        # An exact sort of everything allowed: the best `per_source` by the key (every item tied with the
        # last one kept), so the fused score only breaks ties.
        allowed &= ~np.isnan(key)
        parts = [top_n(np.nan_to_num(key, nan=-np.inf), allowed, per_source)]
    elif request.source == "friends":
        parts = [top_n(scores.social_count + 1e-3 * scores.social_weighted, allowed, per_source)]
    else:
        parts = [top_n(v, allowed, per_source) for v in sources]
    if extra_items and key is None and request.source != "friends":
        extra = np.array([i for i in extra_items if allowed[i]], dtype=np.int64)
        parts.append(extra)
    items = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    # The pool an unfiltered request would have (what training pools are): the reference of the features
    # that compare a candidate with the rest of the pool.
    unseen = unseen_mask(scope, request)
    if key is None and request.source != "friends" and (base_per_source or per_source) == per_source \
            and np.array_equal(allowed, unseen):
        base = np.unique(np.concatenate(parts[:behavioural]))  # no filter: the pool itself (training's case)
    else:
        base = np.unique(np.concatenate([top_n(v, unseen, base_per_source or per_source)
                                         for v in sources[:behavioural]]))
    return CandidatePool(
        items=items,
        sort_values=key[items] if key is not None else None,
        # Evidence is measured against everything the user could be shown, not against this request's filters:
        # the fusion was trained on unfiltered rankings, and an item's score must not change because the
        # user also asked for a price cap (ranking a filtered set = the global ranking, restricted).
        features=feature_matrix(scores, items, unseen, base),
        scores=scores,
        query_sim=scores.query[items] if scores.query is not None else None,
        anchor_sim=scores.anchor[items] if scores.anchor is not None else None,
        allowed=allowed,
    )

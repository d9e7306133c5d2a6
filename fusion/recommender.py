"""Fused recommendations for one user: candidates from all sources, learned fusion, per-item evidence."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from catalog.scope import UserScope, scope_for
from catalog.stores import Stores
from fusion.candidates import CandidatePool, build_pool
from fusion.items import Evidence, Recommendation
from fusion.model import FusionModel
from fusion.request import RecommendRequest
from fusion.settings import RankConfig
from retrieval.bundle import SourceModels
from vectorstore.store import VectorStore, where_clause


@dataclass
class RecommendationList:
    user_id: str
    items: list[Recommendation]
    pool: CandidatePool = field(repr=False)
    order: np.ndarray = field(repr=False)  # all candidate indices (into pool.items), best first
    final_scores: np.ndarray = field(repr=False)  # per pool candidate
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# Evidence thresholds: cite a history item only when the link is strong (cosine of item texts; item-kNN
# similarity, whose 90th percentile is about 0.14 on the demo data).
SIMILAR_TEXT = 0.5
BOUGHT_TOGETHER = 0.1


def _requested_first(tags: list[str], requested: list[str]) -> list[str]:
    """The item's tags with the ones the user asked for first (explanations show only the first few)."""
    wanted = {t.lower() for t in requested}
    return sorted(tags, key=lambda t: t.lower() not in wanted)


def _zscore(values: np.ndarray) -> np.ndarray:
    std = float(values.std())
    return (values - values.mean()) / std if std > 1e-9 else np.zeros_like(values)


class Recommender:
    def __init__(self, stores: Stores, models: SourceModels, fusion: FusionModel, settings: RankConfig,
                 vector_store: VectorStore | None = None, collection: str | None = None):
        self.stores = stores
        self.models = models
        self.fusion = fusion
        self.settings = settings
        self.vector_store = vector_store
        self.collection = collection

    def scope(self, user_id: str) -> UserScope:
        return scope_for(self.stores, user_id)

    def query_vector(self, text: str) -> np.ndarray:
        if self.vector_store is None:
            raise RuntimeError("semantic queries need the vector store")
        return self.vector_store.embedder.embed([text])[0]

    def semantic_hits(self, request: RecommendRequest, vector: np.ndarray, n: int) -> list[int]:
        """Chroma query with the hard constraints as metadata filters (the semantic-search source)."""
        if self.vector_store is None or self.collection is None:
            return []
        c = request.constraints
        where = where_clause(c.category, c.price_min, c.price_max, c.tags)
        hits = self.vector_store.query(self.collection, embedding=vector, n=n, where=where)
        index, withdrawn = self.stores.item_index, self.stores.withdrawn
        return [index[h.item_id] for h in hits if h.item_id in index and not withdrawn[index[h.item_id]]]

    def recommend(self, request: RecommendRequest, scope: UserScope | None = None,
                  wanted: int | None = None) -> RecommendationList:
        """``request.k`` items; ``wanted`` (default ``request.k``) is how many the caller will show, which is
        what the "only N items" note compares with (the LLM stage asks for more to rerank). Reads one state of
        the catalog (a live edit waits for it; catalog/catalog_lock.py)."""
        with self.stores.lock.reading():
            return self._recommend(request, scope, wanted)

    def _recommend(self, request: RecommendRequest, scope: UserScope | None, wanted: int | None) -> RecommendationList:
        started = time.perf_counter()
        scope = scope or self.scope(request.user_id)
        timings: dict[str, float] = {}
        vector = None
        # Items the agent's tools already found join the pool; without them, search Chroma here.
        extra = [self.stores.item_index[i] for i in request.hints if i in self.stores.item_index]
        if request.query and request.query.strip():
            vector = self.query_vector(request.query)
            if not request.hints:
                t = time.perf_counter()
                extra = self.semantic_hits(request, vector, self.settings.sources.per_source)
                timings["semantic_search_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        pool = build_pool(scope, self.models, request, self.settings.sources.per_source, vector, extra)
        timings["candidates_ms"] = (time.perf_counter() - t) * 1000
        learned = self.fusion.logits(pool.features) if len(pool.items) else np.zeros(0)
        final = learned
        if len(pool.items) and (pool.query_sim is not None or pool.anchor_sim is not None):
            # Words in the request (or "more like this one") shift the learned order; both terms are
            # standardised over the pool so the weight means the same whatever the learner's score scale.
            final = _zscore(final)
            weight = self.settings.fusion.query_weight
            if pool.query_sim is not None:
                final = final + weight * _zscore(pool.query_sim)
            if pool.anchor_sim is not None:
                final = final + (request.anchor_weight or weight) * _zscore(pool.anchor_sim)
        if pool.sort_values is not None:  # an exact sort: the key first, the fused score breaks ties
            order = np.lexsort((pool.items, -final, -pool.sort_values))
        elif request.source == "friends":  # friends' picks: most friends first
            order = np.lexsort((pool.items, -final, -pool.scores.social_count[pool.items]))
        else:
            order = np.lexsort((pool.items, -final))
        notes = []
        if len(pool.items) < (wanted or request.k):
            notes.append(f"only {len(pool.items)} items meet the constraints")
        friends = self._friends_who_bought(scope, request)
        top = order[: request.k]
        links = self._history_links(scope, pool.items[top])
        items = [self._describe(pool, int(j), rank + 1, float(final[j]), float(learned[j]), request, friends,
                                links[rank]) for rank, j in enumerate(top)]
        timings["total_ms"] = (time.perf_counter() - started) * 1000
        return RecommendationList(user_id=scope.user_id, items=items, pool=pool, order=order, final_scores=final,
                                  timings_ms=timings, notes=notes)

    def fused_scores(self, user_id: str) -> np.ndarray:
        """The learned fused score this ranker gives each item the user has not bought (-inf for the others):
        the score the item gets in any request of this user without words or anchors, whatever its filters
        (the features do not depend on them)."""
        with self.stores.lock.reading():
            return self._fused_scores(user_id)

    def _fused_scores(self, user_id: str) -> np.ndarray:
        scope = self.scope(user_id)
        request = RecommendRequest(user_id=user_id)
        pool = build_pool(scope, self.models, request, self.stores.n_items,
                          base_per_source=self.settings.sources.per_source)
        out = np.full(self.stores.n_items, -np.inf)
        if len(pool.items):
            out[pool.items] = self.fusion.logits(pool.features)
        return out

    def describe(self, request: RecommendRequest, items: list[int], scope: UserScope | None = None) -> list[Recommendation]:
        """Named items (a comparison) with this user's evidence for each, in the order given."""
        with self.stores.lock.reading():
            return self._describe_items(request, items, scope)

    def _describe_items(self, request: RecommendRequest, items: list[int], scope: UserScope | None) -> list[Recommendation]:
        scope = scope or self.scope(request.user_id)
        pool = build_pool(scope, self.models, request, 1, None, items, base_per_source=self.settings.sources.per_source)
        learned = self.fusion.logits(pool.features) if len(pool.items) else np.zeros(0)
        position = {int(i): j for j, i in enumerate(pool.items)}
        present = [i for i in items if i in position]
        friends = self._friends_who_bought(scope, request)
        links = self._history_links(scope, np.array(present, dtype=np.int64))
        return [self._describe(pool, position[i], rank + 1, float(learned[position[i]]), float(learned[position[i]]),
                               request, friends, links[rank]) for rank, i in enumerate(present)]

    def _history_links(self, scope: UserScope, items: np.ndarray, n: int = 3) -> list[tuple[list[str], list[str]]]:
        """Per item, the history items that make it a fit: similar text, or strong co-occurrence neighbours."""
        hist = scope.own_feedback().indices
        if hist.size == 0 or items.size == 0:
            return [([], []) for _ in items]
        text_sim = self.models.content.items[hist] @ self.models.content.items[items].T  # hist x items
        assert self.models.knn.similarity is not None
        co_sim = self.models.knn.similarity[hist][:, items].toarray()
        titles = self.stores.titles
        links = []
        for col in range(items.size):
            ts, cs = text_sim[:, col], co_sim[:, col]
            item = items[col]  # an item the user only viewed can come back; it is not "similar to" itself
            similar = [hist[k] for k in np.lexsort((hist, -ts)) if ts[k] >= SIMILAR_TEXT and hist[k] != item][:n]
            together = [hist[k] for k in np.lexsort((hist, -cs))
                        if cs[k] >= BOUGHT_TOGETHER and hist[k] not in similar and hist[k] != item][:n]
            links.append(([titles[h] for h in similar], [titles[h] for h in together]))
        return links

    def _friends_who_bought(self, scope: UserScope, request: RecommendRequest) -> tuple[Any, list[str]] | None:
        """The friends' purchase rows (by item) and names, read once per request, when names may be shown."""
        if (not request.use_friends or self.settings.privacy.friends_detail != "names" or scope.friends.size == 0
                or not self.stores.dataset.named_users):  # no users table: ids are not names; counts only
            return None
        return scope.friends_positive().tocsc(), scope.friend_names()

    def _describe(self, pool: CandidatePool, j: int, rank: int, final: float, learned: float,
                  request: RecommendRequest, friends: tuple[Any, list[str]] | None,
                  links: tuple[list[str], list[str]]) -> Recommendation:
        stores = self.stores
        i = int(pool.items[j])
        item = stores.item(i)
        s = pool.scores
        friend_names: list[str] = []
        friends_count = int(s.social_count[i])
        if friends_count and friends is not None:
            block, names = friends
            friend_names = [names[r] for r in block[:, i].indices]
        similar, together = links
        fusion_prob = float(1.0 / (1.0 + np.exp(-learned)))
        evidence = Evidence(
            fusion_score=round(fusion_prob, 4),
            cf_score=round(float(s.cf[i]), 4),
            cooccurrence=round(float(s.knn[i]), 4),
            content_similarity=round(float(s.content[i]), 4),
            friends_count=friends_count if request.use_friends else 0,
            friends=friend_names,
            similar_history=similar,
            bought_together=together,
            popularity=int(stores.popularity[i]),
            trend=round(float(stores.trend[i]), 3),
            query_similarity=round(float(s.query[i]), 4) if s.query is not None else None,
            constraints_met=request.constraints.met_by(stores, i),
        )
        return Recommendation(**item.model_dump(exclude={"tags"}), tags=_requested_first(item.tags, request.constraints.tags),
                              rank=rank, score=round(final, 4), evidence=evidence)

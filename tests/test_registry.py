"""Registered sources (EASE, RP3beta) are evidence in the fusion's pool, rows of the eval and savable with
the index: each derived from the one registry entry."""

from __future__ import annotations

import numpy as np

from catalog.scope import scope_for
from config.settings import Settings
from evals.ablation import SOURCE_FEATURES
from evals.baselines import baseline_grids
from fusion.candidates import FEATURES, SINGLE_SOURCES, allowed_mask, build_pool, top_n
from fusion.request import RecommendRequest
from retrieval.bundle import SourceModels
from retrieval.ease import EASE
from retrieval.registry import REGISTRY
from retrieval.rp3beta import RP3Beta


def _models(stores, settings: Settings) -> SourceModels:
    emb = np.random.default_rng(0).normal(size=(stores.n_items, 8)).astype(np.float32)
    return SourceModels.fit(stores, settings.sources, emb)


def test_registered_sources_are_evidence_for_every_pool_candidate(demo_stores):
    settings = Settings()
    models = _models(demo_stores, settings)
    s = settings.sources
    ease = EASE(s.ease_lambda, s.ease_min_support, s.ease_max_items).fit(demo_stores.feedback)
    rp3 = RP3Beta(s.rp3_alpha, s.rp3_beta, s.rp3_k).fit(demo_stores.feedback)
    for user in range(3, demo_stores.n_users, 61):
        scope = scope_for(demo_stores, str(demo_stores.user_ids[user]))
        request = RecommendRequest(user_id=scope.user_id, exclude_seen="all")
        pool = build_pool(scope, models, request, 20)
        allowed = allowed_mask(scope, request)
        row = demo_stores.feedback[user]
        for name, direct in (("ease", ease.score(row)), ("rp3beta", rp3.score(row))):
            assert set(top_n(direct, allowed, 20).tolist()) <= set(pool.items.tolist())  # its top items join the pool
            np.testing.assert_allclose(pool.features[:, FEATURES.index(f"{name}_raw")], direct[pool.items], atol=1e-6)


def test_registered_sources_survive_save_and_load(demo_stores, tmp_path):
    settings = Settings()
    models = _models(demo_stores, settings)
    models.save(tmp_path)
    loaded = SourceModels.load(tmp_path, settings.sources)
    for entry in REGISTRY:
        assert (tmp_path / entry.file).is_file()
        for user in (0, 17, 123):
            row = demo_stores.feedback[user]
            np.testing.assert_allclose(loaded.registered[entry.name].score(row), models.registered[entry.name].score(row))


def test_every_registered_source_is_a_baseline_an_ablation_and_a_servable_ranker():
    grids = baseline_grids()
    for entry in REGISTRY:
        cls, grid = grids[entry.name]
        assert len(grid) == int(np.prod([len(v) for v in entry.grid.values()]))
        assert all(set(p) == set(entry.grid) for p in grid)
        assert SOURCE_FEATURES[entry.name] == tuple(f"{entry.name}_{v}" for v in ("raw", "z", "norm", "rank", "logrank"))
        assert SINGLE_SOURCES[entry.name] == f"{entry.name}_raw"

"""The extra sources of `fusionrec probe-sources` against independent dense computations, and the probe
end to end on the demo data (validation split only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from catalog.scope import scope_for
from cli.main import main as cli
from config.settings import Settings
from evals.extra_sources import EASE, RP3Beta, UserKNN, UserTags
from evals.source_probe import pool_rows, variant_matrix
from fusion.candidates import FEATURES, allowed_mask, top_n
from fusion.request import RecommendRequest
from retrieval.bundle import SourceModels

ROOT = Path(__file__).resolve().parent.parent


def _dense_binary(stores) -> np.ndarray:
    return (stores.feedback.toarray() > 0).astype(np.float64)


def _some_users(stores, n: int = 12) -> list[int]:
    return np.random.default_rng(0).choice(stores.n_users, n, replace=False).tolist()


def test_rp3beta_is_the_popularity_penalised_three_step_walk(demo_stores):
    x = _dense_binary(demo_stores)
    p_ui = x / np.maximum(x.sum(1, keepdims=True), 1)
    p_iu = x.T / np.maximum(x.T.sum(1, keepdims=True), 1)
    walk = p_iu @ p_ui
    np.fill_diagonal(walk, 0.0)
    pop = x.sum(0)
    walk = walk / np.where(pop > 0, pop, 1.0) ** 0.5
    source = RP3Beta("rp3beta", {"beta": 0.5, "k": demo_stores.n_items}).fit(demo_stores)  # k = every item: no pruning
    for user in _some_users(demo_stores):
        np.testing.assert_allclose(source.score(user), p_ui[user] @ walk, rtol=1e-9, atol=1e-12)


def test_user_knn_sums_the_nearest_users_by_cosine(demo_stores):
    x = _dense_binary(demo_stores)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, 0.0)
    full = UserKNN("user-knn", {"k": demo_stores.n_users}).fit(demo_stores)
    for user in _some_users(demo_stores):
        np.testing.assert_allclose(full.score(user), sim[user] @ x, rtol=1e-9, atol=1e-12)
    pruned = UserKNN("user-knn", {"k": 5}).fit(demo_stores)
    assert np.diff(pruned.neighbours.indptr).max() <= 5


def test_ease_weights_solve_the_constrained_least_squares(demo_stores):
    """Optimality of B for min ||X - XB||^2 + lambda ||B||^2 subject to diag(B) = 0: the gradient
    (G + lambda I) B - G is zero off the diagonal (the diagonal holds the Lagrange multipliers)."""
    lam = 50.0
    source = EASE("ease", {"lambda": lam}).fit(demo_stores)
    x = _dense_binary(demo_stores)[:, source.keep]
    gram = x.T @ x
    b = source.b.astype(np.float64)
    gradient = (gram + lam * np.eye(len(gram))) @ b - gram
    off = ~np.eye(len(gram), dtype=bool)
    assert np.abs(np.diag(b)).max() == 0.0
    assert np.abs(gradient[off]).max() < 1e-3 * np.abs(gram).max()
    assert (np.asarray(demo_stores.feedback.getnnz(axis=0))[source.keep] >= 2).all()
    for user in _some_users(demo_stores):
        expected = np.zeros(demo_stores.n_items)
        expected[source.keep] = x[user] @ b
        np.testing.assert_allclose(source.score(user), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.lastfm
def test_user_tags_score_the_items_that_share_the_users_tags(lastfm_slice):
    from catalog.stores import build_stores
    from loaders.lastfm import load_lastfm

    stores = build_stores(load_lastfm(lastfm_slice))
    assert UserTags.available(stores)
    source = UserTags("user-tags").fit(stores)
    events = stores.dataset.tag_events
    tags_of_item = events.groupby("item_id", observed=True)["tag"].agg(set)
    for user_id in sorted(events["user_id"].astype(str).unique())[:8]:
        mine = set(events.loc[events["user_id"].astype(str) == user_id, "tag"])
        sharing = {stores.item_index[str(i)] for i, tags in tags_of_item.items() if set(tags) & mine}
        scores = source.score(stores.user_index[user_id])
        assert set(np.flatnonzero(scores > 0).tolist()) == sharing


def test_user_tags_need_tag_events(demo_stores):
    assert not UserTags.available(demo_stores)  # the demo shop has no tag events


def test_probe_pool_holds_every_sources_top_items_and_no_seen_item(demo_stores):
    settings = Settings()
    emb = np.random.default_rng(0).normal(size=(demo_stores.n_items, 8)).astype(np.float32)
    models = SourceModels.fit(demo_stores, settings.sources, emb)
    extras = {"rp3beta": RP3Beta("rp3beta", {"beta": 0.3, "k": 100}).fit(demo_stores),
              "user-knn": UserKNN("user-knn", {"k": 20}).fit(demo_stores)}
    per_source = 15
    for user in _some_users(demo_stores, 5):
        rows = pool_rows(demo_stores, models, {n: e.score(user) for n, e in extras.items()}, user, per_source)
        scope = scope_for(demo_stores, str(demo_stores.user_ids[user]))
        allowed = allowed_mask(scope, RecommendRequest(user_id=scope.user_id, exclude_seen="all"))
        for source in extras.values():
            assert set(top_n(source.score(user), allowed, per_source).tolist()) <= set(rows.items.tolist())
        assert not set(rows.items.tolist()) & set(demo_stores.feedback[user].indices.tolist())
        assert variant_matrix(rows, "fusion").shape == (len(rows.items), len(FEATURES))
        assert variant_matrix(rows, "fusion+rp3beta").shape[1] == len(FEATURES) + 5
        assert variant_matrix(rows, "fusion+all").shape[1] == len(FEATURES) + 10


def test_probe_sources_on_demo_scores_validation_users(demo_settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FUSIONREC_FUSION__FOLDS", "2")
    out = tmp_path / "probe.json"
    code = cli(["--home", str(demo_settings.home), "probe-sources", "--data", "demo", "--quick", "--max-users", "80",
                "--sources-from", str(ROOT / "docs/benchmarks/eval-demo.json"), "--json", str(out),
                "--out", str(tmp_path / "md")])
    assert code == 0
    rows = json.loads(out.read_text())
    assert [r["method"] for r in rows] == ["mf-als", "user-knn", "rp3beta", "ease", "fusion", "fusion+user-knn",
                                           "fusion+rp3beta", "fusion+ease", "fusion+all"]
    assert {r["split"] for r in rows} == {"validation"} and {r["users"] for r in rows} == {80}
    for row in rows:
        assert 0 <= row["ndcg@10"] <= row["hr@10"] <= 1
    assert all(r["score_p95_ms"] > 0 for r in rows if r["method"] in ("user-knn", "rp3beta", "ease"))
    assert "| fusion+all |" in capsys.readouterr().out
    assert (tmp_path / "md" / "probe.md").read_text().count("| fusion") == 5


def test_probe_sources_rejects_a_json_without_tuned_sources(demo_settings, tmp_path, capsys):
    bad = tmp_path / "rows.json"
    bad.write_text(json.dumps([{"method": "mf-als", "ndcg@10": 0.2}]))
    code = cli(["--home", str(demo_settings.home), "probe-sources", "--data", "demo", "--sources-from", str(bad)])
    assert code == 2
    assert "no fusion row with tuned source settings" in capsys.readouterr().err

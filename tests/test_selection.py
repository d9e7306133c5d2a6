"""The served ranker is chosen on validation users no learner saw: the fusion when it beats the best single
source there, that source otherwise; the choice is saved with the model and followed by the recommender."""

from __future__ import annotations

import numpy as np
import pytest

from config.settings import Settings
from evals.metrics import RankingMetrics, top_items
from fusion.candidates import FEATURES, SINGLE_SOURCES
from fusion.model import FusionModel
from fusion.recommender import Recommender
from fusion.request import RecommendRequest
from fusion.selection import LabelledRows, ndcg_per_group
from indexing.training import fold_rows, fusion_folds, learner, select_served, train_fusion
from retrieval.bundle import SourceModels


def _settings(tmp_path) -> Settings:
    s = Settings(home=tmp_path, data="demo")
    return s.model_copy(update={"fusion": s.fusion.model_copy(update={"folds": 2})})


def _embed(stores) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(stores.n_items, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def demo_rows(demo_dataset, tmp_path_factory) -> tuple[Settings, LabelledRows]:
    settings = _settings(tmp_path_factory.mktemp("sel"))
    folds = fusion_folds(demo_dataset, 0.2, settings.sources.seed, settings.fusion.folds)
    return settings, fold_rows(folds, settings, _embed)


def test_ndcg_per_group_matches_the_full_ranking_metric():
    rng = np.random.default_rng(5)
    parts, metric = [], RankingMetrics()
    for g in range(30):
        items = rng.choice(200, 40, replace=False)
        scores = rng.integers(0, 5, 40).astype(float)  # many ties: broken by item index
        relevant = set(rng.choice(items, rng.integers(1, 6), replace=False).tolist()) | {1000 + g}  # one outside the pool
        y = np.isin(items, list(relevant))
        n = len(items)
        parts.append((LabelledRows(np.zeros((n, len(FEATURES))), y, np.full(n, g), items, np.full(n, g),
                                   np.zeros(n, np.int64), np.full(n, len(relevant))), scores))
        full = np.full(1001 + g, -np.inf)
        full[items] = scores
        metric.add(top_items(full, np.zeros(0, np.int64), 20), relevant)
    rows = LabelledRows.concat([p for p, _ in parts])
    got = ndcg_per_group(np.concatenate([s for _, s in parts]), rows)
    np.testing.assert_allclose(got, metric.ndcg10, atol=1e-12)


def test_the_fusion_is_served_when_it_beats_every_single_source(demo_rows):
    settings, rows = demo_rows
    selection = select_served(rows, settings)
    assert selection.served == "fusion", selection.reason
    assert selection.validation["fusion"] > max(selection.validation[s] for s in SINGLE_SOURCES) * 1.005
    assert selection.users >= 20


def test_a_fusion_that_learnt_nothing_falls_back_to_the_best_single_source(demo_rows):
    """The same rows, but the learner sees shuffled labels: on held-aside users it ranks worse than a source."""
    settings, rows = demo_rows
    fit = learner(settings)

    def shuffled(x: np.ndarray, y: np.ndarray, groups: np.ndarray):
        return fit(x, np.random.default_rng(1).permutation(y), groups)

    selection = select_served(rows, settings, learn=shuffled)
    best = max(SINGLE_SOURCES, key=lambda s: selection.validation[s])
    assert selection.served == best != "fusion", selection.reason
    assert selection.validation["fusion"] < selection.validation[best]
    assert f"so {best} is served" in selection.reason


def test_a_served_single_source_ranks_like_that_source_alone(demo_stores, tmp_path):
    settings = _settings(tmp_path)
    models = SourceModels.fit(demo_stores, settings.sources, _embed(demo_stores))
    fusion = FusionModel.default().serving("mf-als", {"served": "mf-als", "reason": "test"})
    path = tmp_path / "fusion.json"
    fusion.save(path)
    loaded = FusionModel.load(path)
    assert loaded.served == "mf-als" and loaded.selection["reason"] == "test"
    recommender = Recommender(demo_stores, models, loaded, settings)
    for user in range(0, demo_stores.n_users, 37):
        got = recommender.recommend(RecommendRequest(user_id=str(demo_stores.user_ids[user]), k=10, exclude_seen="all"))
        expected = top_items(models.mf.score(user), demo_stores.feedback[user].indices, 10)
        assert [demo_stores.item_index[r.item_id] for r in got.items] == expected.tolist()
    with pytest.raises(ValueError, match="unknown ranker"):
        FusionModel.default().serving("astrology")


def test_the_index_saves_its_choice(demo_dataset, tmp_path):
    settings = _settings(tmp_path)
    model = train_fusion(demo_dataset, settings, _embed)
    assert model.served in {"fusion", *SINGLE_SOURCES}
    assert model.selection["served"] == model.served and set(model.selection["validation"]) >= {"fusion", "mf-als"}
    model.save(tmp_path / "fusion.json")
    assert FusionModel.load(tmp_path / "fusion.json").served == model.served


def test_index_prints_the_served_ranker_and_why(demo_settings, demo_index, capsys):
    from cli.main import main as cli

    assert cli(["--home", str(demo_settings.home), "index", "--data", "demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"served ranker: {demo_index.fusion.served} (" in out
    assert "validation NDCG@10 on" in out and "mf-als" in out and "fusion " in out

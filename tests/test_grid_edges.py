"""A tuned setting at the edge of its grid extends the grid in that direction and retunes (every method alike)."""

from __future__ import annotations

import numpy as np

from catalog.stores import build_stores
from evals.baselines import Baseline
from evals.offline import MAX_EDGE_STEPS, EvalContext, beyond_edges, tune_baselines
from indexing.training import holdout


def test_beyond_edges_steps_past_the_end_of_the_line_through_the_best_setting():
    grid = [{"k": k, "shrink": s, "weighted": w} for k in (25, 50, 100) for s in (0.0, 5.0) for w in (True, False)]
    assert beyond_edges(grid, {"k": 100, "shrink": 5.0, "weighted": True}) == [
        {"k": 200, "shrink": 5.0, "weighted": True}, {"k": 100, "shrink": 10.0, "weighted": True}]
    assert beyond_edges(grid, {"k": 25, "shrink": 0.0, "weighted": False}) == [
        {"k": 12, "shrink": 0.0, "weighted": False}]  # nothing below a shrinkage of 0
    assert beyond_edges(grid, {"k": 50, "shrink": 0.0, "weighted": True}) == []  # inside on k; 0 is a bound
    assert beyond_edges([{"lam": 30.0}], {"lam": 30.0}) == []  # a single value is no line
    assert beyond_edges([{"beta": 0.2}, {"beta": 0.35}], {"beta": 0.2}) == [{"beta": 0.114}]


class NoisyPopularity(Baseline):
    """Popularity blurred by noise that grows as k moves away from 400: the best k lies beyond the grid."""

    def score(self, user: int) -> np.ndarray:
        noise = np.random.default_rng(user).random(self.stores.n_items) * self.stores.popularity.max()
        return self.stores.popularity + 3.0 * abs(np.log2(self.params["k"] / 400.0)) * noise


def test_tuning_follows_the_best_setting_past_the_grid_edge(demo_dataset):
    split = holdout(demo_dataset, 0.2, seed=3)
    stores = build_stores(split.train)
    ctx = EvalContext(demo_dataset, stores, split.held, stores, split.held, lambda s: np.zeros((s.n_items, 1)),
                      split.train, split.train)
    lines: list[str] = []
    best = tune_baselines(ctx, True, None, 0, lines.append,
                          grids={"noisy": (NoisyPopularity, [{"k": 25}, {"k": 50}, {"k": 100}])})
    assert best["noisy"][1] == {"k": 400}  # 100 -> 200 -> 400, then 800 is worse
    assert MAX_EDGE_STEPS >= 2
    assert "grid extended past its edge: [{'k': 200}, {'k': 400}, {'k': 800}]" in lines[0]

"""Learned fusion of the per-source evidence features into one score.

Two learners, chosen by ``fusion.model``:
* ``logistic``: h = sigma(sum_i W_i * X_i + b) over standardised features — the seed design; its weights
  are plain numbers.
* ``lambdarank`` (default, "or better"): gradient-boosted trees trained to rank each user's held-out
  items first (LightGBM LambdaRank); inspectable through per-feature gain shares and the model text.
Both are trained on held-out behaviour (indexing/training.py) and saved as JSON next to the index, with
the ranker chosen on validation (fusion/selection.py): ``served`` is "fusion", or the single source
whose raw score ranks the candidates instead when the fusion did not beat it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fusion.candidates import FEATURES, SINGLE_SOURCES

# Used only when there is no behaviour to learn from (a brand-new catalog): a sensible prior.
DEFAULT_WEIGHTS = {"cf_z": 1.0, "knn_z": 1.0, "social_share": 0.5, "content_z": 0.5, "popularity_rank": 0.2}
RANKER_PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "lambdarank_truncation_level": 20, "n_estimators": 300, "learning_rate": 0.05,
    "num_leaves": 15, "min_child_samples": 200, "reg_lambda": 10.0, "subsample": 0.8, "subsample_freq": 1,
    "colsample_bytree": 0.7, "n_jobs": 1, "verbose": -1,
}


@dataclass
class FusionModel:
    features: tuple[str, ...]
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    info: dict[str, object] = field(default_factory=dict)
    ranker: Any = None  # a LightGBM Booster when the model is a ranker
    served: str = "fusion"  # or a key of SINGLE_SOURCES: what `logits` ranks by (chosen on validation)
    selection: dict[str, Any] = field(default_factory=dict)  # why (fusion/selection.py Selection.to_json)

    @classmethod
    def default(cls) -> FusionModel:
        weights = np.array([DEFAULT_WEIGHTS.get(f, 0.0) for f in FEATURES])
        return cls(FEATURES, weights, 0.0, np.zeros(len(FEATURES)), np.ones(len(FEATURES)),
                   {"trained": False, "model": "logistic", "reason": "no training data; default prior weights"})

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, c: float = 1.0, info: dict[str, object] | None = None,
            model: str = "logistic", groups: np.ndarray | None = None, seed: int = 0) -> FusionModel:
        from sklearn.linear_model import LogisticRegression

        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-12] = 1.0
        z = (x - mean) / scale
        lr = LogisticRegression(C=c, max_iter=5000)
        lr.fit(z, y.astype(int))
        meta = {"trained": True, "model": model, "rows": int(len(y)), "positives": int(y.sum()), "C": c,
                **(info or {})}
        fitted = cls(FEATURES, lr.coef_[0].copy(), float(lr.intercept_[0]), mean, scale, meta)
        if model == "lambdarank":
            if groups is None:
                raise ValueError("a ranker needs the user group of every row")
            fitted.ranker = fit_ranker(x, y, groups, seed)
        return fitted

    def serving(self, served: str, selection: dict[str, Any] | None = None) -> FusionModel:
        """This model serving ``served`` ("fusion" or a single source) instead."""
        if served != "fusion" and served not in SINGLE_SOURCES:
            raise ValueError(f"unknown ranker {served!r}; expected 'fusion' or one of {sorted(SINGLE_SOURCES)}")
        return replace(self, served=served, selection=dict(selection if selection is not None else self.selection))

    def logits(self, x: np.ndarray) -> np.ndarray:
        if self.served != "fusion":
            return x[:, FEATURES.index(SINGLE_SOURCES[self.served])].astype(np.float64)
        return self.fused_logits(x)

    def fused_logits(self, x: np.ndarray) -> np.ndarray:
        """The learned fusion's logits, whatever is served."""
        if self.ranker is not None:
            return np.asarray(self.ranker.predict(x, num_threads=1), dtype=np.float64)
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def score(self, x: np.ndarray) -> np.ndarray:
        """sigma(logit): a (0, 1) score for display; the order is the order of the logits."""
        return 1.0 / (1.0 + np.exp(-self.logits(x)))

    def weight_table(self) -> list[tuple[str, float]]:
        """Logistic: weights per standard deviation. Ranker: each feature's share of the total split gain."""
        if self.ranker is not None:
            gain = np.asarray(self.ranker.feature_importance(importance_type="gain"), dtype=float)
            share = gain / gain.sum() if gain.sum() > 0 else gain
            return sorted(zip(self.features, share.round(4).tolist(), strict=True), key=lambda t: -t[1])
        return sorted(zip(self.features, self.weights.tolist(), strict=True), key=lambda t: -abs(t[1]))

    def to_json(self) -> dict[str, object]:
        return {"features": list(self.features), "weights": self.weights.tolist(), "bias": self.bias,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "info": self.info,
                "ranker": self.ranker.model_to_string() if self.ranker is not None else None,
                "served": self.served, "selection": self.selection}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FusionModel:
        features = tuple(str(f) for f in data["features"])
        if features != FEATURES:
            raise ValueError("the saved fusion model was trained on other features; re-run `fusionrec index`")
        ranker = None
        if data.get("ranker"):
            import lightgbm as lgb

            ranker = lgb.Booster(model_str=str(data["ranker"]))
        return cls(features, np.array(data["weights"]), float(data["bias"]), np.array(data["mean"]),
                   np.array(data["scale"]), dict(data.get("info") or {}), ranker,
                   str(data.get("served") or "fusion"), dict(data.get("selection") or {}))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: Path) -> FusionModel:
        return cls.from_json(json.loads(path.read_text()))


def fit_ranker(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int) -> Any:
    import lightgbm as lgb

    order = np.argsort(groups, kind="stable")
    x, y, groups = x[order], y[order], groups[order]
    _, counts = np.unique(groups, return_counts=True)
    keep_groups = np.repeat(np.add.reduceat(y.astype(int), np.r_[0, np.cumsum(counts)[:-1]]) > 0, counts)
    x, y, groups = x[keep_groups], y[keep_groups], groups[keep_groups]  # users with no target teach nothing
    _, counts = np.unique(groups, return_counts=True)
    ranker = lgb.LGBMRanker(**RANKER_PARAMS, random_state=seed)
    ranker.fit(x, y.astype(int), group=counts)
    return ranker.booster_

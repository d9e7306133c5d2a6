"""Learned fusion: h = sigma(sum_i W_i * X_i + b) over standardised per-source evidence features.

Trained as a logistic regression on held-out behaviour (agent/training.py); weights are plain numbers
saved as JSON next to the index so anyone can read which source counts how much.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.candidates import FEATURES

# Used only when there is no behaviour to learn from (a brand-new catalog): a sensible prior.
DEFAULT_WEIGHTS = {"cf_norm": 1.0, "knn_norm": 1.0, "social_share": 0.5, "content": 0.5, "popularity_rank": 0.2}


@dataclass
class FusionModel:
    features: tuple[str, ...]
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    info: dict[str, object] = field(default_factory=dict)

    @classmethod
    def default(cls) -> FusionModel:
        weights = np.array([DEFAULT_WEIGHTS.get(f, 0.0) for f in FEATURES])
        return cls(FEATURES, weights, 0.0, np.zeros(len(FEATURES)), np.ones(len(FEATURES)),
                   {"trained": False, "reason": "no training data; default prior weights"})

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, c: float = 1.0, info: dict[str, object] | None = None) -> FusionModel:
        from sklearn.linear_model import LogisticRegression

        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-12] = 1.0
        z = (x - mean) / scale
        lr = LogisticRegression(C=c, max_iter=5000)
        lr.fit(z, y.astype(int))
        return cls(FEATURES, lr.coef_[0].copy(), float(lr.intercept_[0]), mean, scale,
                   {"trained": True, "rows": int(len(y)), "positives": int(y.sum()), "C": c, **(info or {})})

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def score(self, x: np.ndarray) -> np.ndarray:
        """sigma(W . z + b): the fusion probability-like score in (0, 1)."""
        return 1.0 / (1.0 + np.exp(-self.logits(x)))

    def contributions(self, x: np.ndarray) -> dict[str, float]:
        """Per-feature share of one candidate's logit (for inspection)."""
        z = (x - self.mean) / self.scale
        return {f: float(w * v) for f, w, v in zip(self.features, self.weights, z, strict=True)}

    def weight_table(self) -> list[tuple[str, float]]:
        """Weights per unit of standard deviation, largest first."""
        return sorted(zip(self.features, self.weights.tolist(), strict=True), key=lambda t: -abs(t[1]))

    def to_json(self) -> dict[str, object]:
        return {"features": list(self.features), "weights": self.weights.tolist(), "bias": self.bias,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "info": self.info}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> FusionModel:
        features = tuple(data["features"])  # type: ignore[arg-type]
        if features != FEATURES:
            raise ValueError("the saved fusion model was trained on other features; re-run `fusionrec index`")
        return cls(features, np.array(data["weights"]), float(data["bias"]),  # type: ignore[arg-type]
                   np.array(data["mean"]), np.array(data["scale"]), dict(data.get("info", {})))  # type: ignore[arg-type]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, path: Path) -> FusionModel:
        return cls.from_json(json.loads(path.read_text()))

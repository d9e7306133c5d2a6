"""Registered candidate sources: one entry per source says how to build it from the settings, fit it on the
feedback matrix, score a user's row, save and load it, and which settings its tuning grid varies.

The fusion's evidence columns (fusion/candidates.py), the eval's baseline rows (evals/baselines.py), the
ablation (evals/ablation.py) and the served single sources derive from this registry. EASE and RP3beta
are registered; the older sources (item-kNN, ALS, content, friends) still have their own code paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from retrieval.ease import EASE
from retrieval.rp3beta import RP3Beta
from retrieval.settings import SourceSettings


class FeedbackSource(Protocol):
    """A source fit on the users x items feedback matrix that scores any user's row over the whole catalog."""

    def fit(self, feedback: sp.csr_matrix) -> FeedbackSource: ...

    def score(self, user_row: sp.csr_matrix) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> FeedbackSource: ...

    def resized(self, n_items: int) -> FeedbackSource:
        """A copy over ``n_items`` items (a live catalog addition; a new item scores 0 until the next fit)."""
        ...


@dataclass(frozen=True)
class RegisteredSource:
    name: str  # the eval's row, the ablation's and the served ranker's name; also the evidence-column prefix
    build: Callable[[SourceSettings], FeedbackSource]
    grid: dict[str, list[Any]]  # SourceSettings field -> values tuned on validation (a full product)
    quick_grid: dict[str, list[Any]]
    file: str  # saved with the index under this name

    def settings_of(self, settings: SourceSettings) -> dict[str, Any]:
        return {k: getattr(settings, k) for k in self.grid}


REGISTRY: tuple[RegisteredSource, ...] = (
    RegisteredSource(
        "ease", lambda s: EASE(s.ease_lambda, s.ease_min_support, s.ease_max_items),
        grid={"ease_lambda": [30.0, 100.0, 300.0, 1000.0, 3000.0]}, quick_grid={"ease_lambda": [100.0, 300.0]},
        file="ease.npz"),
    RegisteredSource(
        "rp3beta", lambda s: RP3Beta(s.rp3_alpha, s.rp3_beta, s.rp3_k),
        grid={"rp3_beta": [0.2, 0.35, 0.5, 0.65], "rp3_k": [50, 100, 200, 400]},
        quick_grid={"rp3_beta": [0.35], "rp3_k": [100]}, file="rp3beta.npz"),
)


def registered(name: str) -> RegisteredSource:
    for entry in REGISTRY:
        if entry.name == name:
            return entry
    raise KeyError(name)

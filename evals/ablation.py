"""Leave-one-source-out ablation of the learned fusion (`fusionrec eval --ablation`).

For each source, the fusion is retrained on the same fold rows with that source's evidence hidden
(its feature columns set to zero, in training and at scoring) and scored on the same TEST users.
The source's candidates stay in the pool: the row says what the *evidence* of one source adds to
the ranking once the others are known.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from fusion.candidates import FEATURES, REGISTERED
from fusion.model import FusionModel

# Which evidence features belong to which source (every feature belongs to exactly one).
SOURCE_FEATURES: dict[str, tuple[str, ...]] = {
    "mf-als": tuple(f for f in FEATURES if f.startswith("cf_")),
    "item-knn": tuple(f for f in FEATURES if f.startswith("knn_")),
    "content": tuple(f for f in FEATURES if f.startswith("content_")),
    "social": tuple(f for f in FEATURES if f.startswith("social_")),
    "popularity": ("popularity", "popularity_rank", "trend"),
    **{name: tuple(f for f in FEATURES if f.startswith(f"{name}_")) for name in REGISTERED},
}


@dataclass
class HiddenEvidence(FusionModel):
    """A fusion model that never sees some feature columns (they read as zero)."""

    hidden: np.ndarray = field(default_factory=lambda: np.zeros(len(FEATURES), bool))

    def logits(self, x: np.ndarray) -> np.ndarray:
        return super().logits(hide(x, self.hidden))


def hide(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[:, mask] = 0.0
    return out


def hidden_mask(source: str) -> np.ndarray:
    return np.isin(np.array(FEATURES), SOURCE_FEATURES[source])


def fusion_without(source: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, base: FusionModel,
                   seed: int) -> HiddenEvidence:
    """The fusion retrained on the same rows, with the same learner, without ``source``'s evidence."""
    check_partition()
    mask = hidden_mask(source)
    fitted = FusionModel.fit(hide(x, mask), y, float(base.info.get("C", 1.0)),  # type: ignore[arg-type]
                             info={**base.info, "without": source}, model=str(base.info.get("model", "logistic")),
                             groups=groups, seed=seed)
    return HiddenEvidence(**{f.name: getattr(fitted, f.name) for f in fields(FusionModel)}, hidden=mask)


def check_partition() -> None:
    """Every feature is assigned to exactly one source (a new feature must be placed here)."""
    owners = {f: [s for s, names in SOURCE_FEATURES.items() if f in names] for f in FEATURES}
    wrong = [f for f, o in owners.items() if len(o) != 1]
    if wrong:
        raise ValueError(f"features not owned by exactly one source in evals/ablation.py: {wrong}")

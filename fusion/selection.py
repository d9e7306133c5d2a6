"""Which ranker is served: the learned fusion, or the best single source when the fusion does not beat it
on validation users that its learner never saw.

Rule (``fusion.selection_margin``, default 0.5%): a seeded ``fusion.selection_fraction`` of the first
fold's users is set aside; a fusion is fit on every other user's rows (all folds) and scored on them,
and so is every single source (its raw score, ties by item index). The fusion is served when its mean
NDCG@10 there exceeds the best single source's by more than the margin; otherwise the best single
source is served. The standard error of the paired per-user difference is reported with the figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusion.candidates import FEATURES, SINGLE_SOURCES

Scorer = Callable[[np.ndarray], np.ndarray]
Learner = Callable[[np.ndarray, np.ndarray, np.ndarray], Scorer]
MIN_USERS = 20  # below this many validation users a comparison says nothing: the fusion stays
DISCOUNT = 1.0 / np.log2(np.arange(2, 12))


@dataclass
class LabelledRows:
    """Candidate rows of held-out users: features, label, and where each row comes from."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray  # one id per (fold, user)
    items: np.ndarray  # item index (ties are broken by it)
    users: np.ndarray  # user index
    folds: np.ndarray  # fold number (0: the validation split proper)
    targets: np.ndarray  # the group's number of held-out items, in or out of the pool (ideal DCG)

    @classmethod
    def empty(cls) -> LabelledRows:
        z = np.zeros(0, np.int64)
        return cls(np.zeros((0, len(FEATURES))), np.zeros(0, bool), z, z, z, z, z)

    @classmethod
    def concat(cls, parts: list[LabelledRows]) -> LabelledRows:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) if f != "x" else np.vstack([p.x for p in parts])
                     for f in ("x", "y", "groups", "items", "users", "folds", "targets")))

    def subset(self, mask: np.ndarray) -> LabelledRows:
        return LabelledRows(self.x[mask], self.y[mask], self.groups[mask], self.items[mask], self.users[mask],
                            self.folds[mask], self.targets[mask])


def ndcg_per_group(scores: np.ndarray, rows: LabelledRows) -> np.ndarray:
    """NDCG@10 of every group (sorted by group id) when its candidates are ranked by ``scores``, ties by
    item index; the ideal DCG counts every held-out item, also those outside the pool (full ranking)."""
    order = np.lexsort((rows.items, -scores, rows.groups))
    groups, hits = rows.groups[order], rows.y[order].astype(float)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    rank = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    top = rank < 10
    dcg = np.bincount(np.searchsorted(groups[starts], groups[top]), weights=hits[top] * DISCOUNT[rank[top]],
                      minlength=len(starts))
    ideal = np.array([DISCOUNT[: min(int(t), 10)].sum() for t in rows.targets[order][starts]])
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


@dataclass
class Selection:
    served: str  # "fusion" or a key of SINGLE_SOURCES
    reason: str
    validation: dict[str, float] = field(default_factory=dict)  # NDCG@10 of the fusion and each single source
    users: int = 0
    margin: float = 0.0
    paired_se: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"served": self.served, "reason": self.reason, "validation": self.validation, "users": self.users,
                "margin": self.margin, "paired_se": self.paired_se}

    def lines(self) -> list[str]:
        """What `fusionrec index` and `fusionrec eval` print."""
        figures = ", ".join(f"{name} {v:.4f}" for name, v in sorted(self.validation.items(), key=lambda t: -t[1]))
        return [f"served ranker: {self.served} ({self.reason})",
                f"  validation NDCG@10 on {self.users} users no learner saw: {figures}"]


def choose_served(rows: LabelledRows, learn: Learner, margin: float, fraction: float, seed: int) -> Selection:
    """Set aside some first-fold users, fit the fusion without them, compare it with every single source there."""
    has_target = rows.targets > 0
    first = rows.folds == 0
    candidates = np.unique(rows.users[first & has_target])
    n = int(round(fraction * len(candidates)))
    if n < MIN_USERS or len(candidates) - n < 1:
        return Selection("fusion", f"only {n} validation users to compare on (fewer than {MIN_USERS}); "
                         "the fusion is kept", users=n, margin=margin)
    chosen = np.random.default_rng(seed).choice(candidates, n, replace=False)
    aside = np.isin(rows.users, chosen)
    scorer = learn(rows.x[~aside], rows.y[~aside], rows.groups[~aside])
    held = rows.subset(aside & first)
    fusion = ndcg_per_group(scorer(held.x), held)
    singles = {name: ndcg_per_group(held.x[:, FEATURES.index(column)], held) for name, column in SINGLE_SOURCES.items()}
    best = max(singles, key=lambda name: float(singles[name].mean()))  # first listed wins a tie
    diff = fusion - singles[best]
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    figures = {"fusion": round(float(fusion.mean()), 4), **{k: round(float(v.mean()), 4) for k, v in singles.items()}}
    f, b = float(fusion.mean()), float(singles[best].mean())
    ratio = f / b if b > 0 else float("inf")
    if f > b * (1.0 + margin):
        served, reason = "fusion", (f"fusion {f:.4f} beats the best single source, {best} {b:.4f}, by {ratio:.3f}x "
                                    f"(more than the {margin:.1%} margin; paired SE {se:.4f})")
    else:
        served, reason = best, (f"fusion {f:.4f} is {ratio:.3f}x the best single source, {best} {b:.4f}: not more "
                                f"than the {margin:.1%} margin (paired SE {se:.4f}), so {best} is served")
    return Selection(served, reason, figures, users=len(fusion), margin=margin, paired_se=round(se, 5))

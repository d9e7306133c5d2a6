"""Full-ranking top-N metrics with binary relevance."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DISCOUNT = 1.0 / np.log2(np.arange(2, 102))


def top_items(scores: np.ndarray, excluded: np.ndarray, n: int) -> np.ndarray:
    """The n best items by score, excluded items removed, ties broken by item index (same for every method)."""
    s = scores.astype(np.float64, copy=True)
    s[excluded] = -np.inf
    n = min(n, len(s))
    part = np.argpartition(-s, n - 1)[:n]
    threshold = s[part].min()
    cand = np.flatnonzero(s >= threshold)
    order = np.lexsort((cand, -s[cand]))[:n]
    top = cand[order]
    return top[np.isfinite(s[top])]


@dataclass
class RankingMetrics:
    ndcg10: list[float] = field(default_factory=list)
    hr10: list[float] = field(default_factory=list)
    recall10: list[float] = field(default_factory=list)
    recall20: list[float] = field(default_factory=list)
    shown: set[int] = field(default_factory=set)

    def add(self, ranked: np.ndarray, relevant: set[int]) -> None:
        if not relevant:
            return
        rel = np.array([i in relevant for i in ranked[:20]], dtype=float)
        top10 = rel[:10]
        idcg = DISCOUNT[: min(len(relevant), 10)].sum()
        self.ndcg10.append(float((top10 * DISCOUNT[: len(top10)]).sum() / idcg))
        self.hr10.append(float(top10.any()))
        self.recall10.append(float(top10.sum() / min(len(relevant), 10)))
        self.recall20.append(float(rel.sum() / min(len(relevant), 20)))
        self.shown.update(int(i) for i in ranked[:10])

    def summary(self, n_items: int) -> dict[str, float]:
        return {
            "hr@10": float(np.mean(self.hr10)) if self.hr10 else 0.0,
            "ndcg@10": float(np.mean(self.ndcg10)) if self.ndcg10 else 0.0,
            "recall@10": float(np.mean(self.recall10)) if self.recall10 else 0.0,
        "recall@20": float(np.mean(self.recall20)) if self.recall20 else 0.0,
            "coverage": len(self.shown) / max(n_items, 1),
            "users": len(self.ndcg10),
        }

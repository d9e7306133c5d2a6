"""Hyper-parameters of the candidate sources (the `sources` part of the top-level settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class SourceSettings(BaseModel):
    """Tuned on validation by `fusionrec eval`."""

    per_source: int = Field(100, description="candidates each source contributes before fusion")
    knn_neighbours: int = 200
    knn_shrink: float = 10.0
    mf_factors: int = 32
    mf_regularization: float = 0.1
    mf_alpha: float = 1.0
    mf_iterations: int = 15
    mf_weighting: Literal["log", "bm25"] = "log"
    social_similarity_weighted: bool = True
    tag_event_weight: float = 1.0
    ease_lambda: float = 300.0
    ease_min_support: int = Field(3, description="EASE covers items with at least this many users (retrieval/ease.py)")
    ease_max_items: int = Field(8000, description="and at most this many, the most popular: a dense max_items² float32 matrix")
    rp3_alpha: float = 1.0
    rp3_beta: float = 0.35
    rp3_k: int = 200
    seed: int = 42

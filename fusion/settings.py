"""How the fusion is trained and applied (the `fusion` part of the top-level settings)."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, Field

from catalog.settings import PrivacySettings
from retrieval.settings import SourceSettings


class FusionSettings(BaseModel):
    validation_fraction: float = 0.2
    folds: int = Field(5, description="holdout folds whose labels train the fusion (more labels, better weights)")
    model: Literal["logistic", "lambdarank"] = "lambdarank"
    regularization_c: float = 1.0
    max_training_users: int = 20000
    query_weight: float = 1.5
    selection_margin: float = Field(0.005, description="the fusion is served only when its validation NDCG@10 "
                                    "beats the best single source's by more than this share (fusion/selection.py)")
    selection_fraction: float = Field(0.3, description="share of the first fold's users set aside to choose the "
                                      "served ranker (the fusion compared is fit without them)")


class RankConfig(Protocol):
    """What the recommender reads from the top-level settings."""

    @property
    def sources(self) -> SourceSettings: ...

    @property
    def fusion(self) -> FusionSettings: ...

    @property
    def privacy(self) -> PrivacySettings: ...

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


class RankConfig(Protocol):
    """What the recommender reads from the top-level settings."""

    @property
    def sources(self) -> SourceSettings: ...

    @property
    def fusion(self) -> FusionSettings: ...

    @property
    def privacy(self) -> PrivacySettings: ...

"""A ranked item with the evidence behind it: what the fusion hands to the agent and every face shows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from catalog.items import Item


class Evidence(BaseModel):
    """What we know about why an item fits: every field comes from the stores, never from a model."""

    fusion_score: float
    cf_score: float
    cooccurrence: float
    content_similarity: float
    friends_count: int
    friends: list[str] = Field(default_factory=list)  # display names (empty when the privacy level is 'counts')
    similar_history: list[str] = Field(default_factory=list)  # the user's items whose text this one resembles
    bought_together: list[str] = Field(default_factory=list)  # the user's items often chosen by the same people
    popularity: int = 0
    trend: float = 0.0
    query_similarity: float | None = None
    constraints_met: list[str] = Field(default_factory=list)


NO_EVIDENCE = Evidence(fusion_score=0.0, cf_score=0.0, cooccurrence=0.0, content_similarity=0.0, friends_count=0)


class Recommendation(Item):
    """An item in an answer. ``score`` and ``evidence`` are None when the item was asked about, not ranked."""

    rank: int
    score: float | None = None
    evidence: Evidence | None = None
    explanation: str = ""
    explanation_source: Literal["evidence", "llm"] = "evidence"

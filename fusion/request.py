"""What a recommendation call asks for: hard constraints, soft query, exclusions, anchors, size."""

from __future__ import annotations

from dataclasses import dataclass, field

from catalog.constraints import Constraints


@dataclass
class RecommendRequest:
    user_id: str
    k: int = 10
    query: str | None = None  # soft preferences in words
    constraints: Constraints = field(default_factory=Constraints)
    exclude_items: list[str] = field(default_factory=list)  # rejected or already shown
    like_items: list[str] = field(default_factory=list)  # "more like this one"
    hints: list[str] = field(default_factory=list)  # candidates found by the agent's tools this turn
    use_friends: bool = True
    exclude_seen: str = "known"  # "known": drop items the user has or knows (any interaction but browsing:
    # Dataset.browse_kinds); "positive": drop items bought/liked only; "all": drop every interacted item;
    # "none": keep them (a factual sort: "the cheapest tent you have" is the cheapest one, owned or not)
    sort: str | None = None  # order the allowed items exactly by: price_asc | price_desc | popularity |
    # friends | newest | trend | rating (ties by the fused score); None: the fused order
    source: str = "fusion"  # "friends": only items the user's friends bought, most friends first
    anchor_weight: float | None = None  # weight of "like this item" against the fused order (None: the setting)

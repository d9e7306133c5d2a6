"""Fused candidates -> the structured data of the rerank prompt, within a token budget.

Only data is built here (sanitised catalog text, formatted prices, each candidate's evidence); all the
wording is the prompt set's `rerank` template. The budget is
enforced on the rendered prompt: the lowest-fused candidates are dropped first, then the other
sections are shortened.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from catalog.constraints import Constraints
from catalog.sanitize import strip_instructions
from fusion.items import NO_EVIDENCE, Recommendation
from tools.history import HistoryEntry
from tools.social import FriendSignal

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MARKUP = re.compile(r"[<>{}\[\]`]")


def clean(text: str, limit: int = 160) -> str:
    """Catalog text as inert data: no control characters, no markup or template braces, bounded length."""
    text = _MARKUP.sub(" ", _CONTROL.sub(" ", str(text)))
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass
class CandidateFacts:
    id: str
    title: str
    category: str
    price: str
    tags: list[str]
    friends: int = 0  # friends who bought it
    friend_names: list[str] = field(default_factory=list)
    similar: list[str] = field(default_factory=list)  # the user's items whose text this one resembles
    together: list[str] = field(default_factory=list)  # the user's items often chosen by the same people
    match: str = ""  # similarity to the words of the request, when there were any
    description: str = ""


@dataclass
class RerankContext:
    profile: dict[str, Any]  # {"categories": [{"name", "count"}], "recent": [titles]}
    friends: list[dict[str, Any]]  # [{"title", "count", "names"}]
    constraints: list[tuple[str, str]]  # (kind, formatted value), e.g. ("price_max", "$20")
    request: str
    candidates: list[CandidateFacts]  # in the order shown to the model
    descriptions: bool = False
    dropped: int = 0  # candidates removed to fit the budget
    tokens: int = 0
    compact: bool = False  # sections shortened to fit the budget

    @property
    def candidate_ids(self) -> list[str]:
        return [c.id for c in self.candidates]

    def variables(self, k: int) -> dict[str, object]:
        return {"k": k, "profile": self.profile, "friends": self.friends, "constraints": self.constraints,
                "request": self.request, "candidates": self.candidates, "descriptions": self.descriptions}

    def reordered(self, order: list[int]) -> RerankContext:
        """The same context with the candidates shown in another order (a shuffled rerank pass)."""
        return replace(self, candidates=[self.candidates[p] for p in order])


def profile_facts(history: list[HistoryEntry], limit: int = 4) -> dict[str, Any]:
    cats = Counter(h.category for h in history if h.category)
    return {"categories": [{"name": c, "count": n} for c, n in cats.most_common(3)],
            "recent": [clean(h.title, 40) for h in history[:limit]]}


def friends_facts(signals: list[FriendSignal], show_names: bool, limit: int = 3) -> list[dict[str, Any]]:
    return [{"title": clean(s.title, 60), "count": s.friends_count,
             "names": [clean(n, 30) for n in s.friends[:3]] if show_names else []} for s in signals[:limit]]


def constraint_facts(c: Constraints, currency: str = "") -> list[tuple[str, str]]:
    out = [("category", c.category)] if c.category else []
    if c.price_min is not None:
        out.append(("price_min", f"{currency}{c.price_min:g}"))
    if c.price_max is not None:
        out.append(("price_max", f"{currency}{c.price_max:g}"))
    out += [("tag", t) for t in c.tags] + [("exclude_tag", t) for t in c.exclude_tags]
    out += [("exclude_category", x) for x in c.exclude_categories]
    return out


def candidate_facts(rec: Recommendation, currency: str = "", show_names: bool = True) -> CandidateFacts:
    e = rec.evidence or NO_EVIDENCE
    return CandidateFacts(
        id=rec.item_id, title=clean(strip_instructions(rec.title), 50), category=rec.category,
        price=f"{currency}{rec.price:.2f}" if rec.price is not None else "n/a",
        tags=[clean(t, 20) for t in rec.tags[:3]], friends=e.friends_count,
        friend_names=[clean(n, 30) for n in e.friends[:3]] if show_names else [],
        similar=[clean(t, 40) for t in e.similar_history[:2]], together=[clean(t, 40) for t in e.bought_together[:2]],
        match=f"{e.query_similarity:.2f}" if e.query_similarity is not None else "",
        description=clean(strip_instructions(rec.description), 48))


def build_rerank_context(
    candidates: list[Recommendation],
    order: list[int],
    history: list[HistoryEntry],
    friends: list[FriendSignal],
    constraints: Constraints,
    request_text: str,
    measure: Callable[[RerankContext], int],
    budget: int,
    currency: str = "",
    show_names: bool = True,
    descriptions: bool = False,
) -> RerankContext:
    """``order`` is the display order (indices into ``candidates``, which are in fusion order);
    ``measure`` counts the tokens of the whole prompt rendered from a context."""
    ctx = RerankContext(
        profile=profile_facts(history), friends=friends_facts(friends, show_names),
        constraints=constraint_facts(constraints, currency),
        request=clean(request_text or "(no words, just recommendations)", 300),
        candidates=[candidate_facts(candidates[j], currency, show_names) for j in order],
        descriptions=descriptions,
    )
    # Lowest-fused candidates go first when the budget is tight (fusion rank = index in `candidates`).
    fusion_rank = {candidates[j].item_id: j for j in order}
    tokens = measure(ctx)
    while tokens > budget and len(ctx.candidates) > 2:
        worst = max(range(len(ctx.candidates)), key=lambda p: fusion_rank[ctx.candidates[p].id])
        ctx.candidates = [c for p, c in enumerate(ctx.candidates) if p != worst]
        ctx.dropped += 1
        tokens = measure(ctx)
    if tokens > budget:
        ctx.compact = True
        ctx.profile = {"categories": ctx.profile["categories"][:1], "recent": ctx.profile["recent"][:1]}
        ctx.friends = ctx.friends[:1]
        ctx.candidates = [replace(c, similar=c.similar[:1], together=[], friend_names=c.friend_names[:1], tags=c.tags[:1],
                                  description="") for c in ctx.candidates]
        tokens = measure(ctx)
    if tokens > budget:
        raise ValueError(f"the rerank context needs {tokens} tokens, over the budget of {budget}")
    ctx.tokens = tokens
    return ctx

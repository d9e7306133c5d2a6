"""Fused candidates -> the structured prompt context of the rerank call, within a token budget.

All catalog and user text is sanitised and goes inside the template's <data> block; the budget is
enforced by dropping the lowest-fused candidates, then shortening the other sections.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from agent.recommender import Recommendation
from agent.request import Constraints
from loaders.sanitize import strip_instructions
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
class RerankContext:
    profile: str
    friends: str
    constraints: str
    request: str
    candidates: list[str]  # one line per candidate, in the order shown to the model
    candidate_ids: list[str]
    dropped: int = 0  # candidates removed to fit the budget
    tokens: int = 0

    def variables(self, k: int) -> dict[str, object]:
        return {"k": k, "profile": self.profile, "friends": self.friends, "constraints": self.constraints,
                "request": self.request, "candidates": "\n".join(self.candidates)}


def describe_profile(history: list[HistoryEntry], limit: int = 4) -> str:
    if not history:
        return "No history yet."
    cats = Counter(h.category for h in history if h.category)
    lines = ["Favourite categories: " + ", ".join(f"{c} ({n})" for c, n in cats.most_common(3))]
    lines.append("Recent items: " + "; ".join(clean(h.title, 40) for h in history[:limit]))
    return "\n".join(lines)


def describe_friends(signals: list[FriendSignal], show_names: bool, limit: int = 3) -> str:
    if not signals:
        return "No friends' purchases."
    parts = []
    for s in signals[:limit]:
        who = f" ({', '.join(clean(n, 30) for n in s.friends[:3])})" if show_names and s.friends else ""
        parts.append(f"{clean(s.title, 60)}: {s.friends_count} friend(s){who}")
    return "\n".join(parts)


def describe_constraints(c: Constraints, currency: str = "") -> str:
    parts = []
    if c.category:
        parts.append(f"category = {c.category}")
    if c.price_min is not None:
        parts.append(f"price >= {currency}{c.price_min:g}")
    if c.price_max is not None:
        parts.append(f"price <= {currency}{c.price_max:g}")
    parts += [f"has tag '{t}'" for t in c.tags]
    parts += [f"not tagged '{t}'" for t in c.exclude_tags]
    parts += [f"not in {cat}" for cat in c.exclude_categories]
    return "; ".join(parts) or "none"


def candidate_line(rec: Recommendation, currency: str = "", show_names: bool = True,
                   descriptions: bool = False) -> str:
    e = rec.evidence
    price = f"{currency}{rec.price:.2f}" if rec.price is not None else "n/a"
    why = []
    if e.friends_count:
        names = f" ({', '.join(clean(n, 30) for n in e.friends[:3])})" if show_names and e.friends else ""
        why.append(f"{e.friends_count} friend(s) bought it{names}")
    if e.similar_history:
        why.append("similar to " + ", ".join(clean(t, 40) for t in e.similar_history[:2]))
    if e.bought_together:
        why.append("chosen with " + ", ".join(clean(t, 40) for t in e.bought_together[:2]))
    if e.query_similarity is not None:
        why.append(f"request match {e.query_similarity:.2f}")
    tags = ", ".join(clean(t, 20) for t in rec.tags[:3])
    line = (f"{rec.item_id} | {clean(strip_instructions(rec.title), 50)} | {rec.category} | {price} | {tags} | "
            f"{'; '.join(why) or '-'}")
    return line + f" | {clean(strip_instructions(rec.description), 48)}" if descriptions else line


def build_rerank_context(
    candidates: list[Recommendation],
    order: list[int],
    history: list[HistoryEntry],
    friends: list[FriendSignal],
    constraints: Constraints,
    request_text: str,
    count_tokens: Callable[[str], int],
    budget: int,
    fixed_tokens: int,
    currency: str = "",
    show_names: bool = True,
    descriptions: bool = False,
) -> RerankContext:
    """``order`` is the display order (indices into ``candidates``); ``fixed_tokens`` is the template."""
    ctx = RerankContext(
        profile=describe_profile(history),
        friends=describe_friends(friends, show_names),
        constraints=describe_constraints(constraints, currency),
        request=clean(request_text or "(no words, just recommendations)", 300),
        candidates=[candidate_line(candidates[j], currency, show_names, descriptions) for j in order],
        candidate_ids=[candidates[j].item_id for j in order],
    )
    # Lowest-fused candidates go first when the budget is tight (fusion rank = index in `candidates`).
    drop_order = sorted(range(len(order)), key=lambda pos: -order[pos])

    def total() -> int:
        return fixed_tokens + count_tokens("\n".join([ctx.profile, ctx.friends, ctx.constraints, ctx.request,
                                                      *ctx.candidates]))

    tokens = total()
    while tokens > budget and len(ctx.candidates) > 2:
        pos = drop_order.pop(0)
        keep = [p for p in range(len(ctx.candidates)) if p != pos]
        ctx.candidates = [ctx.candidates[p] for p in keep]
        ctx.candidate_ids = [ctx.candidate_ids[p] for p in keep]
        drop_order = [p - (p > pos) for p in drop_order]
        ctx.dropped += 1
        tokens = total()
    if tokens > budget:
        ctx.profile, ctx.friends = ctx.profile.split("\n")[0][:200], ctx.friends.split("\n")[0][:200]
        ctx.candidates = [line[:160] for line in ctx.candidates]
        tokens = total()
    if tokens > budget:
        raise ValueError(f"the rerank context needs {tokens} tokens, over the budget of {budget}")
    ctx.tokens = tokens
    return ctx

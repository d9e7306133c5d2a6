"""Intent + session memory -> a plan: which tools to call with what arguments, and the recommendation
request to fuse. Decided by code (plan first, then execute), so routing works with any model."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from statistics import median
from typing import Any

import numpy as np

from agent.intent import Intent
from catalog.constraints import Constraints
from catalog.stores import Stores
from fusion.request import RecommendRequest
from storage.sessions import SessionState


@dataclass
class ToolCall:
    name: str
    args: dict[str, Any]
    why: str


@dataclass
class Plan:
    kind: str  # "recommend", "answer" (a question about an item), "refuse"
    calls: list[ToolCall] = field(default_factory=list)
    request: RecommendRequest | None = None
    state: SessionState | None = None  # the session state after this turn
    notes: list[str] = field(default_factory=list)
    target_item: str | None = None  # for answers


def _position(state: SessionState, pos: int) -> str | None:
    items = state.last_list
    if not items:
        return None
    if pos == 0:
        return state.focus or items[0]
    if pos == -1:
        return items[-1]
    return items[pos - 1] if 1 <= pos <= len(items) else None


def merge_constraints(old: Constraints, new: Constraints) -> Constraints:
    """Constraints persist until changed: fields set in this message override; a new category resets tags."""
    merged = replace(old, tags=list(old.tags), exclude_tags=list(old.exclude_tags),
                     exclude_categories=list(old.exclude_categories))
    if new.category and new.category != old.category:
        merged.category, merged.tags = new.category, []
    if new.price_min is not None:
        merged.price_min = new.price_min
    if new.price_max is not None:
        merged.price_max = new.price_max
    for tag in new.tags:
        if tag not in merged.tags:
            merged.tags.append(tag)
    merged.exclude_tags += [t for t in new.exclude_tags if t not in merged.exclude_tags]
    merged.exclude_categories += [c for c in new.exclude_categories if c not in merged.exclude_categories]
    merged.tags = [t for t in merged.tags if t not in merged.exclude_tags]
    if merged.category in merged.exclude_categories:
        merged.category = None
    return merged


def cheaper_cap(shown_prices: list[float], candidates: np.ndarray, k: int,
                current_max: float | None) -> float:
    """The price cap of "cheaper" after a list: 90% of the list's median price, raised (never above
    the most expensive item shown, never above the user's own cap) until ``k`` candidates fit under it.

    ``candidates`` are the prices of the items that could be shown (constraints met, not owned, not
    rejected). How many of them sit just under the median depends on which items the previous list
    held, so a fixed fraction alone would make the size of the answer hang on ranking details.
    """
    limit = min(max(shown_prices), current_max if current_max is not None else float("inf"))
    cap = round(0.9 * min(median(shown_prices), limit), 2)
    below = np.sort(candidates[candidates < limit])
    if below.size and int((below <= cap).sum()) < k:
        cap = max(cap, float(below[min(k, below.size) - 1]))
    return cap


def plan_turn(intent: Intent, state: SessionState, user_id: str, stores: Stores, default_k: int,
              max_k: int, reset: bool = False, available: np.ndarray | None = None) -> Plan:
    """``available``: mask of the items this user could be shown (not already owned); None = all."""
    new_state = SessionState.from_json(state.to_json())  # a copy; the store commits it with the turn
    if intent.out_of_scope:
        return Plan("refuse", state=new_state)
    if intent.question and intent.question_target is not None:
        target = intent.question_target
        item = target if isinstance(target, str) else _position(state, int(target))
        if item is None:
            return Plan("answer", state=new_state, notes=["There is no earlier list to refer to yet."])
        new_state.focus = item
        return Plan("answer", [ToolCall("item_attributes", {"item_id": item}, "the user asked about this item")],
                    state=new_state, target_item=item)

    notes: list[str] = []
    old = state.constraints_obj()
    new = intent.constraints
    topic_change = bool(new.category and new.category != old.category) or bool(
        new.tags and old.tags and not set(new.tags) & set(old.tags) and not new.category)
    if topic_change and not intent.refinements and not old.is_empty():
        notes.append("new topic: earlier filters were cleared")
    constraints = Constraints() if reset or (topic_change and not intent.refinements) else old
    constraints = merge_constraints(constraints, intent.constraints)
    like_items = list(intent.mentioned_items)
    k = max(1, min(intent.count or default_k, max_k))
    prices = [float(p) for p in (stores.prices[stores.item_index[i]] for i in state.last_list if i in stores.item_index)
              if p == p]
    for ref in intent.refinements:
        kind, _, arg = ref.partition(":")
        if kind == "cheaper":
            if prices:
                open_items = constraints.mask(stores) & (available if available is not None else True)
                for item in [*state.rejected, *intent.exclude_items]:
                    if item in stores.item_index:
                        open_items[stores.item_index[item]] = False
                candidates = stores.prices[open_items]
                cap = cheaper_cap(prices, candidates[~np.isnan(candidates)], k, constraints.price_max)
                constraints.price_max = cap
                notes.append(f"cheaper: {stores.dataset.currency}{cap:g} or less")
            else:
                known = stores.prices[constraints.mask(stores)]
                known = known[~np.isnan(known)]
                if known.size:
                    cap = round(float(np.percentile(known, 25)), 2)
                    constraints.price_max = cap
                    notes.append(f"no earlier list to compare with: showing the cheaper quarter (up to "
                                 f"{stores.dataset.currency}{cap:g})")
        elif kind == "pricier" and prices:
            constraints.price_min = round(1.1 * median(prices), 2)
        elif kind == "more_like":
            item = _position(state, int(arg))
            if item:
                like_items.append(item)
                new_state.focus = item
            else:
                notes.append("I could not tell which earlier item you meant")
        elif kind == "reject":
            targets = state.last_list if arg == "all" else [i for i in [_position(state, int(arg))] if i]
            for item in targets:
                if item not in new_state.rejected:
                    new_state.rejected.append(item)
    new_state.rejected += [i for i in intent.exclude_items if i not in new_state.rejected]
    preferences = intent.preferences or ("" if intent.constraints != Constraints() else state.preferences)
    new_state.preferences = preferences
    new_state.constraints = constraints.to_dict()
    exclude = list(dict.fromkeys(new_state.rejected + like_items))
    request = RecommendRequest(user_id=user_id, k=k, query=preferences or None, constraints=constraints,
                               exclude_items=exclude, like_items=like_items,
                               use_friends=intent.use_friends is not False)
    calls = [ToolCall("user_history", {"limit": 5}, "profile of the acting user")]
    if request.use_friends:
        calls.append(ToolCall("friends_purchases", {"limit": 5}, "what friends bought"))
    hard = {k2: v for k2, v in {"category": constraints.category, "price_min": constraints.price_min,
                                "price_max": constraints.price_max, "tags": constraints.tags}.items() if v}
    if hard:
        calls.append(ToolCall("search_catalog", {**hard, "limit": 20}, "items meeting the hard conditions"))
    if preferences:
        calls.append(ToolCall("semantic_search", {"query": preferences, **hard, "limit": 20},
                              "items matching the words"))
    for item in like_items[:2]:
        calls.append(ToolCall("similar_items", {"item_id": item, "limit": 10}, "items like the one you named"))
    return Plan("recommend", calls, request, new_state, notes)

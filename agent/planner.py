"""Intent + session memory -> a plan: what kind of answer the act needs, which tools to call with what
arguments, and the recommendation request to fuse. Decided by code (plan first, then execute), so the
routing works with any model, or none.

Memory across turns: hard filters and soft words accumulate until the user changes the subject (says so,
or names another category without refining); rejected items never come back in the session.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from statistics import median
from typing import Any

import numpy as np

from agent.intent import Intent
from catalog.constraints import Constraints
from catalog.stores import Stores
from fusion.request import RecommendRequest
from storage.sessions import SessionState

ANCHOR_WEIGHT = 3.0  # "like X": the anchor's neighbourhood outweighs the user's general taste
MAX_PREFERENCE_WORDS = 12


@dataclass
class ToolCall:
    name: str
    args: dict[str, Any]
    why: str


@dataclass
class Plan:
    kind: str  # "recommend", "answer" (an item), "compare", "catalog", "refuse"
    calls: list[ToolCall] = field(default_factory=list)
    request: RecommendRequest | None = None
    state: SessionState | None = None  # the session state after this turn
    notes: list[str] = field(default_factory=list)
    target_item: str | None = None  # for item answers
    items: list[str] = field(default_factory=list)  # for comparisons
    understood: list[str] = field(default_factory=list)  # what the answer says it understood
    owned: list[str] = field(default_factory=list)  # items the user said they have ("I bought the second one")


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
    """Constraints persist until changed: fields set in this message override, lists accumulate; a new
    category replaces the old one (and the tags that came with it)."""
    merged = copy.deepcopy(old)
    if (new.category and new.category != old.category) or new.any_categories:
        merged.category, merged.any_categories, merged.tags = new.category, list(new.any_categories), []
    if new.price_min is not None:
        merged.price_min = new.price_min
    if new.price_max is not None:
        merged.price_max = new.price_max
    for name in ("tags", "any_tags", "exclude_tags", "exclude_categories", "brands", "exclude_brands",
                 "title_words", "exclude_title_words"):
        target = getattr(merged, name)
        target += [v for v in getattr(new, name) if v not in target]
    merged.tags = [t for t in merged.tags if t not in merged.exclude_tags]
    merged.brands = [b for b in merged.brands if b not in merged.exclude_brands]
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


def price_band(stores: Stores, constraints: Constraints, band: str) -> tuple[float | None, float | None, str]:
    """"cheap" / "mid" / "premium" as a price range: the lower, middle or upper third of the prices of what
    the rest of the request allows (so "cheap" means cheap for a camera, not cheap for a book)."""
    scope = replace(constraints, price_min=None, price_max=None)
    prices = stores.prices[scope.mask(stores)]
    prices = prices[~np.isnan(prices)]
    if prices.size < 3:
        prices = stores.prices[~np.isnan(stores.prices)]
    if prices.size == 0:
        return None, None, ""
    low, high = (round(float(np.percentile(prices, q)), 2) for q in (33.3, 66.7))
    what = constraints.category or (" or ".join(constraints.any_categories) if constraints.any_categories else
                                    "/".join(constraints.tags) or "the catalog")
    cur = stores.dataset.currency
    if band == "cheap":
        return None, low, f"cheap: up to {cur}{low:g}, the cheaper third of {what}"
    if band == "premium":
        return high, None, f"premium: from {cur}{high:g}, the dearest third of {what}"
    return low, high, f"mid-range: {cur}{low:g}–{cur}{high:g} for {what}"


class Planner:
    def __init__(self, stores: Stores, default_k: int, max_k: int):
        self.stores = stores
        self.default_k = default_k
        self.max_k = max_k

    def plan(self, intent: Intent, state: SessionState, user_id: str,
             available: np.ndarray | None = None) -> Plan:
        """``available``: mask of the items this user could be shown (not already owned); None = all."""
        new_state = SessionState.from_json(state.to_json())  # a copy; the store commits it with the turn
        if intent.act == "out_of_scope":
            return Plan("refuse", state=new_state)
        if intent.act == "catalog_question":
            return Plan("catalog", state=new_state)
        if intent.act == "compare":
            return self._compare(intent, state, new_state)
        if intent.act == "item_question" and intent.question_target is not None:
            target = intent.question_target
            item = target if isinstance(target, str) else _position(state, int(target))
            if item is None:
                return Plan("answer", state=new_state, notes=["There is no earlier list to refer to yet."])
            new_state.focus = item
            return Plan("answer", [ToolCall("item_attributes", {"item_id": item}, "the user asked about this item")],
                        state=new_state, target_item=item)
        return self._recommend(intent, state, new_state, user_id, available)

    # --- comparisons -------------------------------------------------------------------------------
    def _compare(self, intent: Intent, state: SessionState, new_state: SessionState) -> Plan:
        items = list(intent.mentioned_items)
        items += [i for i in (_position(state, p) for p in intent.positions) if i and i not in items]
        if len(items) < 2 and state.last_list:
            items += [i for i in state.last_list[:2] if i not in items][: 2 - len(items)]
        if len(items) < 2:
            return Plan("answer", state=new_state, notes=["Name two items to compare (or ask after a list)."])
        new_state.focus = items[0]
        calls = [ToolCall("item_attributes", {"item_id": i}, "an item to compare") for i in items[:4]]
        return Plan("compare", calls, state=new_state, items=items[:4])

    # --- recommendations ---------------------------------------------------------------------------
    def _recommend(self, intent: Intent, state: SessionState, new_state: SessionState, user_id: str,
                   available: np.ndarray | None) -> Plan:
        stores, notes, understood = self.stores, [], []
        old = state.constraints_obj()
        new = intent.constraints
        changed_category = bool((new.category and new.category != old.category) or
                                (new.any_categories and new.any_categories != old.any_categories))
        refining = bool(intent.refinements or intent.additive or intent.act == "refine")
        topic_change = intent.new_topic or (changed_category and not refining)
        if topic_change and not old.is_empty():
            notes.append("new topic: earlier filters were cleared")
        base = Constraints() if topic_change else old
        constraints = merge_constraints(base, new)
        k = max(1, min(intent.count or self.default_k, self.max_k))
        like_items: list[str] = []
        anchor_weight = None
        anchor_words: list[str] = []
        # Anchors: "like X", "more like the second one", "like the first but cheaper".
        anchors = list(intent.mentioned_items)
        anchors += [i for i in (_position(state, p) for p in intent.positions) if i and i not in anchors]
        if intent.anaphora and not anchors and state.focus:
            anchors.append(state.focus)
        if intent.act == "similar" and anchors:
            anchor = anchors[0]
            like_items += anchors[:3] if intent.mentioned_items else [anchor]
            new_state.focus = anchor
            anchor_weight = ANCHOR_WEIGHT
            a = stores.item_idx(anchor)
            if intent.mentioned_items:
                # A newly named item speaks for itself: the earlier filters are about other things.
                constraints = merge_constraints(Constraints(), new)
                if not new.category and not new.any_categories and stores.categories[a]:
                    constraints.category = str(stores.categories[a])
            # "more like the second one" stays within what the conversation asked for.
            price = stores.prices[a]
            if "cheaper" in intent.refinements and not np.isnan(price):
                constraints.price_max = min(constraints.price_max or np.inf, round(float(price) - 0.01, 2))
            if "pricier" in intent.refinements and not np.isnan(price):
                constraints.price_min = max(constraints.price_min or 0.0, round(float(price) + 0.01, 2))
            brand = stores.brands[a]
            if brand and ("same_brand" in intent.changed or intent.that_brand):
                constraints.brands = [brand]
            if brand and "other_brand" in intent.changed:
                constraints.exclude_brands += [brand] if brand not in constraints.exclude_brands else []
                constraints.brands = [b for b in constraints.brands if b != brand]
            understood.append(f"items like {stores.titles[a]}" + self._price_text(a) + self._change_text(intent, a))
            kind_word = stores.titles[a].split()[-1] if len(stores.titles[a].split()) > 1 else ""
            if kind_word and int(stores.items_titled(kind_word).sum()) > 1:
                anchor_words.append(kind_word.lower())  # the same kind of item ranks first (another DAC)
        elif intent.act == "similar":
            notes.append("I could not tell which item you meant")
        if intent.cheaper_than or intent.pricier_than:
            ref_item = stores.item_idx(intent.cheaper_than or intent.pricier_than or "")
            price = stores.prices[ref_item]
            if not np.isnan(price):
                if intent.cheaper_than:
                    constraints.price_max = round(float(price) - 0.01, 2)
                else:
                    constraints.price_min = round(float(price) + 0.01, 2)
                if not constraints.category and not constraints.any_categories and stores.categories[ref_item]:
                    constraints.category = str(stores.categories[ref_item])
                understood.append(f"{'cheaper' if intent.cheaper_than else 'dearer'} than {stores.titles[ref_item]}"
                                  + self._price_text(ref_item))
            like_items.append(str(stores.item_ids[ref_item]))
        if intent.that_brand and intent.act != "similar" and state.focus in stores.item_index:
            brand = stores.brands[stores.item_index[state.focus]]
            if brand:
                constraints.brands = [brand]
        if intent.price_band and constraints.price_min is None and constraints.price_max is None:
            lo, hi, said = price_band(stores, constraints, intent.price_band)
            constraints.price_min, constraints.price_max = lo, hi
            if said:
                understood.append(said)
        prices = [float(p) for p in (stores.prices[stores.item_index[i]] for i in state.last_list if i in stores.item_index)
                  if p == p]
        owned: list[str] = []
        for ref in intent.refinements:
            kind, _, arg = ref.partition(":")
            if kind == "cheaper" and intent.act != "similar":
                self._cheaper(state, intent, constraints, prices, k, available, notes)
            elif kind == "pricier" and intent.act != "similar" and prices:
                constraints.price_min = round(1.1 * median(prices), 2)
            elif kind in ("reject", "owned"):
                targets = state.last_list if arg == "all" else [i for i in [_position(state, int(arg))] if i]
                for item in targets:
                    if item not in new_state.rejected:
                        new_state.rejected.append(item)
                if kind == "owned" and targets:
                    notes.append(f"noted that you already have {stores.titles[stores.item_index[targets[0]]]}")
                    owned += [t for t in targets if t not in owned]
        new_state.rejected += [i for i in intent.exclude_items if i not in new_state.rejected]
        understood += [f"not {stores.titles[stores.item_index[i]]}" for i in intent.exclude_items if i in stores.item_index]
        preferences = self._preferences(intent, state, topic_change)
        new_state.preferences = preferences
        query = " ".join(dict.fromkeys([*preferences.split(), *anchor_words]))
        new_state.constraints = constraints.to_dict()
        exclude = list(dict.fromkeys(new_state.rejected + like_items))
        if intent.sort == "rating" and stores.mean_rating() is None:
            notes.append("this catalog has no ratings, so I ranked by fit instead")
        elif intent.sort:
            understood.append({"price_asc": "cheapest first", "price_desc": "dearest first",
                               "popularity": "most popular first", "friends": "most bought by your friends first",
                               "newest": "newest first", "trend": "trending first",
                               "rating": "highest rated first"}[intent.sort])
        factual = intent.sort in ("price_asc", "price_desc", "newest", "rating")
        source = "friends" if intent.act == "friends" or intent.sort == "friends" else "fusion"
        if source == "friends":
            understood.append("what your friends bought")
        request = RecommendRequest(user_id=user_id, k=k, query=query or None, constraints=constraints,
                                   exclude_items=exclude, like_items=like_items,
                                   use_friends=intent.use_friends is not False, sort=intent.sort if intent.sort != "friends" else None,
                                   source=source, anchor_weight=anchor_weight,
                                   exclude_seen="none" if factual else "known")
        return Plan("recommend", self._calls(request, constraints, preferences, like_items), request, new_state, notes,
                    understood=understood, owned=owned)

    def _cheaper(self, state: SessionState, intent: Intent, constraints: Constraints, prices: list[float], k: int,
                 available: np.ndarray | None, notes: list[str]) -> None:
        stores = self.stores
        cur = stores.dataset.currency
        if prices:
            open_items = constraints.mask(stores) & (available if available is not None else True)
            for item in [*state.rejected, *intent.exclude_items]:
                if item in stores.item_index:
                    open_items[stores.item_index[item]] = False
            candidates = stores.prices[open_items]
            cap = cheaper_cap(prices, candidates[~np.isnan(candidates)], k, constraints.price_max)
            constraints.price_max = cap
            notes.append(f"cheaper: {cur}{cap:g} or less")
        else:
            known = stores.prices[constraints.mask(stores)]
            known = known[~np.isnan(known)]
            if known.size:
                cap = round(float(np.percentile(known, 25)), 2)
                constraints.price_max = cap
                notes.append(f"no earlier list to compare with: showing the cheaper quarter (up to {cur}{cap:g})")

    def _preferences(self, intent: Intent, state: SessionState, topic_change: bool) -> str:
        """Soft words accumulate across turns (newest first wins a tie), until the subject changes."""
        old = [] if topic_change else state.preferences.split()
        words = list(dict.fromkeys([*intent.preferences.split(), *old]))
        return " ".join(words[:MAX_PREFERENCE_WORDS])

    def _price_text(self, i: int) -> str:
        price = self.stores.prices[i]
        return "" if np.isnan(price) else f" ({self.stores.dataset.currency}{float(price):.2f})"

    def _change_text(self, intent: Intent, i: int) -> str:
        parts = []
        if "cheaper" in intent.refinements:
            parts.append("cheaper")
        if "pricier" in intent.refinements:
            parts.append("dearer")
        brand = self.stores.brands[i]
        if "other_brand" in intent.changed and brand:
            parts.append(f"not by {brand}")
        if ("same_brand" in intent.changed or intent.that_brand) and brand:
            parts.append(f"also by {brand}")
        return (", " + ", ".join(parts)) if parts else ""

    @staticmethod
    def _calls(request: RecommendRequest, constraints: Constraints, preferences: str,
               like_items: list[str]) -> list[ToolCall]:
        calls = [ToolCall("user_history", {"limit": 8}, "profile of the acting user")]
        if request.use_friends:
            calls.append(ToolCall("friends_purchases", {"limit": 5}, "what friends bought"))
        hard = {k2: v for k2, v in {"category": constraints.category, "price_min": constraints.price_min,
                                    "price_max": constraints.price_max, "tags": constraints.tags[:6]}.items() if v}
        if hard and request.source == "fusion" and not request.sort:
            calls.append(ToolCall("search_catalog", {**hard, "limit": 20}, "items meeting the hard conditions"))
        if preferences and request.source == "fusion":
            calls.append(ToolCall("semantic_search", {"query": preferences[:300], **hard, "limit": 20},
                                  "items matching the words"))
        for item in like_items[:2]:
            calls.append(ToolCall("similar_items", {"item_id": item, "limit": 10}, "items like the one you named"))
        return calls


def plan_turn(intent: Intent, state: SessionState, user_id: str, stores: Stores, default_k: int,
              max_k: int, reset: bool = False, available: np.ndarray | None = None) -> Plan:
    """One plan (kept as a function for callers that plan a single turn)."""
    if reset:
        state = replace(state, constraints={}, preferences="")
    return Planner(stores, default_k, max_k).plan(intent, state, user_id, available)

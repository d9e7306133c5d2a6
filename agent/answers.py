"""Answers that are facts from the stores, not rankings: questions about the catalog (how many, which
categories or brands, price ranges, whether something is sold) and side-by-side comparisons."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.intent import Intent
from agent.reply import money, safe
from catalog.constraints import Constraints
from catalog.stores import Stores


@dataclass
class Answer:
    reply: str
    facts: dict[str, Any] = field(default_factory=dict)  # the numbers behind the reply, for API callers
    items: list[int] = field(default_factory=list)  # item indices the answer shows


def _scope_words(c: Constraints) -> str:
    parts = []
    if c.category:
        parts.append(c.category)
    if c.any_categories:
        parts.append(" or ".join(c.any_categories))
    parts += c.tags + c.title_words + [f"by {b}" for b in c.brands]
    return " ".join(parts)


def catalog_answer(stores: Stores, intent: Intent) -> Answer:
    c = intent.constraints
    mask = c.mask(stores)
    scoped = not c.is_empty()
    what = _scope_words(c)
    cur = stores.dataset.currency
    n = int(mask.sum())
    kind = intent.catalog_question or "categories"
    noun = stores.dataset.item_noun if hasattr(stores.dataset, "item_noun") else "items"
    if kind == "count" or (kind == "has" and scoped):
        if kind == "has":
            reply = (f"Yes — {n} {safe(what)} {noun}." if n else f"No, there is nothing matching {safe(what)} here.")
        else:
            reply = f"There are {n} {noun}" + (f" matching {safe(what)}" if scoped else " in the catalog") + "."
        if not scoped:
            cats = Counter(stores.categories[mask].tolist())
            reply += " By category: " + ", ".join(f"{safe(k)} {v}" for k, v in cats.most_common(12) if k) + "."
        return Answer(reply, {"count": n, "scope": what or None}, _examples(stores, mask))
    if kind == "brands":
        brands = Counter(b for b, ok in zip(stores.brands, mask, strict=True) if ok and b)
        if not brands:
            return Answer("This catalog lists no brands.", {"brands": {}})
        listed = ", ".join(f"{safe(b)} ({k})" for b, k in sorted(brands.items(), key=lambda t: (-t[1], t[0])))
        return Answer(f"{len(brands)} brands" + (f" for {safe(what)}" if scoped else "") + f": {listed}.",
                      {"brands": dict(brands)})
    if kind == "price_range":
        prices = stores.prices[mask]
        prices = prices[~np.isnan(prices)]
        if prices.size == 0:
            return Answer("Nothing here has a listed price" + (f" for {safe(what)}" if scoped else "") + ".",
                          {"priced": 0})
        lo, mid, hi = float(prices.min()), float(np.median(prices)), float(prices.max())
        reply = ("Prices" + (f" of {safe(what)}" if scoped else "") + f" range from {money(lo, cur)} to "
                 f"{money(hi, cur)} (median {money(mid, cur)}, {prices.size} priced {noun}).")
        cheapest = np.flatnonzero(mask & (stores.prices == lo))[:1]
        dearest = np.flatnonzero(mask & (stores.prices == hi))[:1]
        return Answer(reply, {"min": lo, "median": mid, "max": hi, "priced": int(prices.size)},
                      [*cheapest.tolist(), *dearest.tolist()])
    if kind == "tags":
        counts = np.asarray(stores.item_tags[np.flatnonzero(mask)].sum(axis=0)).ravel()
        top = np.argsort(-counts, kind="stable")[:15]
        listed = ", ".join(f"{safe(stores.tag_vocab[t])} ({int(counts[t])})" for t in top if counts[t])
        return Answer("Common tags" + (f" for {safe(what)}" if scoped else "") + f": {listed}.",
                      {"tags": {str(stores.tag_vocab[t]): int(counts[t]) for t in top if counts[t]}})
    cats = Counter(cat for cat, ok in zip(stores.categories.tolist(), mask, strict=True) if ok and cat)
    if len(cats) <= 1 and not scoped:
        return Answer(f"The catalog has {stores.n_offered} {noun}.", {"count": stores.n_offered})
    listed = ", ".join(f"{safe(k)} ({v})" for k, v in cats.most_common(20))
    more = f" and {len(cats) - 20} more" if len(cats) > 20 else ""
    scope_text = f" matching {safe(what)}" if scoped else ""
    total = int(mask.sum())
    return Answer(f"{total} {noun}{scope_text} in {len(cats)} {'category' if len(cats) == 1 else 'categories'}: "
                  f"{listed}{more}.", {"categories": dict(cats)})


def _examples(stores: Stores, mask: np.ndarray, n: int = 3) -> list[int]:
    idx = np.flatnonzero(mask)
    return idx[np.lexsort((idx, -stores.popularity[idx]))][:n].tolist()


def comparison_rows(stores: Stores, items: list[int], evidence: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per attribute, one column per item: the facts side by side."""
    cur = stores.dataset.currency
    rows: list[dict[str, str]] = []

    def row(name: str, values: list[str]) -> None:
        if any(v for v in values):
            rows.append({"attribute": name, **{stores.titles[i]: v for i, v in zip(items, values, strict=True)}})

    row("price", [money(float(stores.prices[i]), cur) if not np.isnan(stores.prices[i]) else "—" for i in items])
    row("category", [str(stores.categories[i]) for i in items])
    row("brand", [stores.brands[i] for i in items])
    row("tags", [", ".join(stores.tag_lists[i][:5]) for i in items])
    row("popularity", [str(int(stores.popularity[i])) for i in items])
    row("friends who have it", [str(e.get("friends_count", 0)) for e in evidence])
    row("why it may suit you", [str(e.get("reason", "")) for e in evidence])
    return rows


def comparison_text(stores: Stores, items: list[int], rows: list[dict[str, str]]) -> str:
    titles = [stores.titles[i] for i in items]
    header = "| | " + " | ".join(safe(t) for t in titles) + " |"
    lines = [f"Comparing {' and '.join(f'**{safe(t)}**' for t in titles)}:", "", header,
             "|---|" + "---|" * len(titles)]
    for r in rows:
        lines.append(f"| {safe(r['attribute'])} | " + " | ".join(safe(r[t]) for t in titles) + " |")
    priced = [(float(stores.prices[i]), stores.titles[i]) for i in items if not np.isnan(stores.prices[i])]
    if len(priced) >= 2:
        cheap, dear = min(priced), max(priced)
        if cheap[0] < dear[0]:
            lines += ["", f"{safe(cheap[1])} is {money(dear[0] - cheap[0], stores.dataset.currency)} cheaper."]
    return "\n".join(lines)

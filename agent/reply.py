"""The words of an answer: built from stored facts, with every catalog string escaped for markdown/HTML."""

from __future__ import annotations

import html
import re
from typing import Any

from catalog.sanitize import FLAG_INSTRUCTIONS, has_instructions
from fusion.items import Recommendation

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")

REFUSALS = {
    "action": "I can only recommend items and answer questions about them — I can't buy, order, email or message "
              "anyone. You can open an item from the list to buy it yourself.",
    "other_user": "I can only use your own history and what your friends liked, in aggregate. I can't show another "
                  "person's purchases or history.",
    "instructions": "I can't share how I'm set up, but I'm happy to recommend something — tell me what you're "
                    "looking for.",
    "unclear": "I'm a shopping recommender, so I can't help with that — but tell me what you're looking for (a kind "
               "of item, a price, something like an item you know) or ask about the catalog.",
    "small_talk": "Hi! Tell me what you're looking for — a kind of item, a price, something like an item you "
                  "know — or ask about the catalog.",
}


def safe(text: Any) -> str:
    """Catalog or user text made inert for markdown and HTML renderers (no links, images, tags, emphasis)."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))


FLAGGED = "catalog text, flagged: may contain instructions"


def flagged_quote(text: Any) -> str:
    """Flagged catalog text as quoted data: delimited and marked, so that neither a reader nor a caller's own
    model takes it for part of the answer (or for an instruction)."""
    return f"[{FLAGGED}] «{safe(text)}» [end of catalog text]"


def is_flagged(record: dict[str, Any] | Recommendation) -> bool:
    flags = record.get("flags", []) if isinstance(record, dict) else record.flags
    return FLAG_INSTRUCTIONS in (flags or [])


def title_text(title: Any, flagged: bool) -> str:
    """An item's title in bold, or quoted as flagged data when it holds the instructions itself."""
    return flagged_quote(title) if flagged and has_instructions(str(title)) else f"**{safe(title)}**"


def money(price: float | None, currency: str) -> str:
    return f"{currency}{price:.2f}" if price is not None else ""


def describe_constraints(c: dict[str, Any], currency: str) -> str:
    """The hard filters in words ("electronics, under $50, tagged audio, not by Harbor")."""
    parts = []
    if c.get("category"):
        parts.append(str(c["category"]))
    if c.get("any_categories"):
        parts.append(" or ".join(c["any_categories"]))
    if c.get("price_min") is not None and c.get("price_max") is not None:
        parts.append(f"{currency}{c['price_min']:g}–{currency}{c['price_max']:g}")
    elif c.get("price_max") is not None:
        parts.append(f"under {currency}{c['price_max']:g}")
    elif c.get("price_min") is not None:
        parts.append(f"over {currency}{c['price_min']:g}")
    if c.get("tags"):
        parts.append("tagged " + " and ".join(c["tags"]))
    if c.get("any_tags"):
        parts.append("tagged " + " or ".join(c["any_tags"]))
    parts += [f"{w}s" if not w.endswith("s") else w for w in c.get("title_words", [])]
    if c.get("brands"):
        parts.append("by " + " or ".join(c["brands"]))
    parts += [f"not tagged {t}" for t in c.get("exclude_tags", [])]
    parts += [f"no {x}" for x in c.get("exclude_categories", [])]
    parts += [f"not by {b}" for b in c.get("exclude_brands", [])]
    parts += [f"no {w}s" if not w.endswith("s") else f"no {w}" for w in c.get("exclude_title_words", [])]
    return ", ".join(parts)


def recommendations_text(items: list[Recommendation], constraints: dict[str, Any], notes: list[str],
                         currency: str, fallback_reason: str | None, llm_used: bool,
                         understood: list[str] | None = None, has_prices: bool = True) -> str:
    understood = understood or []
    filters = describe_constraints(constraints, currency)
    said = "; ".join(p for p in [*understood, filters] if p)
    if not items:
        lines = ["I couldn't find anything that meets all of that" + (f" ({safe(said)})" if said else "") + "."]
        lines += [f"_{safe(n)}_" for n in notes]
        advice = "a higher price limit, another category" if has_prices else "fewer words, another category"
        lines.append(f"Try loosening a condition ({advice}).")
        return "\n\n".join(lines)
    header = f"Here are {len(items)} picks for you" + (f" ({safe(said)})" if said else "")
    lines = [header + ":"]
    for item in items:
        price = money(item.price, currency)
        lines.append(f"{item.rank}. {title_text(item.title, is_flagged(item))}" + (f" — {safe(price)}" if price else "")
                     + f"  \n   {safe(item.explanation)}")
        if is_flagged(item):
            lines.append(f"   _[{FLAGGED}: its listing is shown as data, not as advice]_")
    for note in notes:
        lines.append(f"_{safe(note)}_")
    if fallback_reason == "circuit_open":
        lines.append("_Ranked by the fusion model only (the language model failed several times in a row and "
                     "is skipped for a while: circuit_open)._")
    elif fallback_reason and fallback_reason not in {"llm_off", "ids_repaired"}:
        lines.append(f"_Ranked by the fusion model only ({safe(fallback_reason)})._")
    return "\n".join(lines)


def item_answer(question: str, record: dict[str, Any], explanation: str | None, currency: str) -> str:
    flagged = is_flagged(record)
    title = title_text(record["title"], flagged).removeprefix("**").removesuffix("**")
    if question == "price":
        price = money(record.get("price"), currency)
        return f"**{title}** costs {safe(price)}." if price else f"**{title}** has no listed price."
    if question == "why":
        if explanation:
            return f"Why **{title}**: {safe(explanation)}"
        return f"**{title}** was not in your last list, so I have no reasons recorded for it."
    tags = ", ".join(record.get("tags", []))
    price = money(record.get("price"), currency)
    description = record.get("description", "")
    about = (flagged_quote(description) if flagged and description else safe(description))
    return (f"**{title}** — {safe(record.get('category', ''))}" + (f", {safe(price)}" if price else "")
            + (f". Tags: {safe(tags)}" if tags else "") + f". {about}")

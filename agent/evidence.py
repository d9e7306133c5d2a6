"""Evidence in words: the one place where a pick's stored facts become phrases. The explanation sentence,
the UI card, the CLI and the rerank context all use these phrases."""

from __future__ import annotations

from fusion.items import Recommendation


def reasons(rec: Recommendation, show_names: bool = True, fallback: bool = True,
            request: bool = True, verb: str = "bought") -> list[str]:
    """Short phrases, strongest evidence first; with ``fallback`` never empty (popularity or taste profile).
    ``request=False`` leaves out how the item meets the request (a prompt that states the request already)."""
    e = rec.evidence
    if e is None:
        return []
    parts = []
    if e.friends_count:
        who = f": {', '.join(e.friends[:3])}" if show_names and e.friends else ""
        parts.append(f"{verb} by {e.friends_count} of your friends{who}")
    if e.similar_history:
        parts.append("similar to " + " and ".join(e.similar_history[:2]) + " from your history")
    if e.bought_together:
        parts.append("often chosen by people who also chose " + " and ".join(e.bought_together[:2]))
    if e.constraints_met and request:
        parts.append("meets your request (" + "; ".join(e.constraints_met) + ")")
    if e.query_similarity is not None and e.query_similarity > 0.3 and request:
        parts.append("matches what you described")
    if not parts and fallback:
        parts.append(f"popular: {verb} by {e.popularity} people" if e.popularity else "a fit for your taste profile")
    return parts


def attributes(rec: Recommendation, currency: str = "") -> list[str]:
    """Category, price and the first tags, as shown after the reasons."""
    attrs = [rec.category] if rec.category else []
    if rec.price is not None:
        attrs.append(f"{currency}{rec.price:.2f}")
    if rec.tags:
        attrs.append(", ".join(rec.tags[:3]))
    return attrs


def evidence_text(rec: Recommendation, currency: str = "", show_names: bool = True, verb: str = "bought") -> str:
    """The explanation built only from stored evidence: reasons, then the item's attributes."""
    text = "; ".join(reasons(rec, show_names, verb=verb))
    attrs = attributes(rec, currency)
    text = f"{text[:1].upper()}{text[1:]}"
    return f"{text} ({' · '.join(attrs)})." if attrs else f"{text}."

"""From linked mentions to what the message means: which reading of each span the wording supports (an
attribute or an item reference), which spans are excluded ("nothing from Harbor", "no tents or stoves"),
and how they combine ("kitchen or garden": one of them; "dark and ambient": both)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.linker import Linked, Mention
from agent.slots import ATTRIBUTE_BEFORE, CHEAP, EXCLUDE_BEFORE, MID, PREMIUM, REFERENCE_BEFORE
from agent.text import is_language
from catalog.constraints import Constraints

ATTRIBUTE_ORDER = ("brand", "tag", "category", "noun")
PRICEISH = re.compile(r"[$€£\d]")
TASTE_BEFORE = re.compile(r"\b(i|we|they|you)( really| also| do| just| mostly| usually)? (like|love|enjoy|prefer|dig|am into|'m into)\s*$")
_CONNECTOR = re.compile(r"^[\s,;/&]*(?:(or|and|nor|either|plus|as well as|and also|and no|or no|and not|or not)\b)?"
                        r"[\s,;/&]*(?:(any|the|a|an)\s+)?$")


@dataclass
class Readings:
    """The chosen reading of every span, in message order, and what it adds up to."""

    chosen: list[Mention] = field(default_factory=list)
    excluded: list[Mention] = field(default_factory=list)
    constraints: Constraints = field(default_factory=Constraints)
    items: list[str] = field(default_factory=list)  # item ids named (not excluded), in order
    exclude_items: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # ambiguities resolved, said back to the user
    used_tokens: set[int] = field(default_factory=set)


def _before(text: str, linked: Linked, m: Mention, chars: int = 40) -> str:
    start = linked.tokens[m.start].start
    return text[max(0, start - chars):start].lower()


def excluded_before(text: str, linked: Linked, m: Mention) -> bool:
    """An exclusion cue right before the mention, allowing up to two describing words in between
    ("no tents", "not the Kestrel band", "other than plush bears"), but not words of the sentence
    ("not too expensive camping gear" excludes nothing)."""
    before = _before(text, linked, m)
    for _ in range(3):
        if EXCLUDE_BEFORE.search(before):
            return True
        head, _, last = before.rstrip().rpartition(" ")
        if not re.fullmatch(r"[a-z][a-z'-]*", last) or is_language(last) or PRICEISH.search(last):
            return False  # punctuation ends a cue's reach: "still no — rock and pop" excludes nothing
        before = head + " "
    return False


def _capitalised(text: str, linked: Linked, m: Mention) -> bool:
    tok = linked.tokens[m.start]
    if not tok.raw[:1].isupper():
        return False
    head = text[:tok.start].rstrip()
    return bool(head) and head[-1] not in ".!?:"  # not merely the first word of a sentence


def choose(text: str, linked: Linked, price_words: bool = True) -> list[tuple[Mention, list[Mention]]]:
    """One reading per span (longest spans first, no overlaps), with the other readings it beat."""
    by_span: dict[tuple[int, int], list[Mention]] = {}
    for m in linked.mentions:
        by_span.setdefault((m.start, m.end), []).append(m)
    taken: set[int] = set()
    out: list[tuple[Mention, list[Mention]]] = []
    # Exact names first (longest first), then partial titles, so "the Fjord Max Tent and the Northwind Prime
    # Tent" is two titles, not one partial title across the "and".
    for (start, end), readings in sorted(by_span.items(), key=lambda kv: (-(kv[0][1] - kv[0][0]),
                                                                         max(m.score for m in kv[1]) < 100, kv[0][0])):
        if any(p in taken for p in range(start, end)):
            continue
        words = text[linked.tokens[start].start:linked.tokens[end - 1].end].lower()
        if price_words and (CHEAP.fullmatch(words) or PREMIUM.fullmatch(words) or MID.fullmatch(words)) \
                and not excluded_before(text, linked, readings[0]):
            continue  # "budget", "premium": a price the user means, not the tag of that name ("no premium" is)
        pick = _pick(text, linked, readings)
        if pick is None:
            continue
        taken.update(range(start, end))
        out.append((pick, [r for r in readings if r is not pick]))
    return sorted(out, key=lambda t: t[0].start)


def _pick(text: str, linked: Linked, readings: list[Mention]) -> Mention | None:
    titles = [m for m in readings if m.kind == "title"]
    attributes = sorted((m for m in readings if m.kind != "title"), key=lambda m: ATTRIBUTE_ORDER.index(m.kind))
    if not titles:
        return attributes[0] if attributes else None
    m = titles[0]
    before = _before(text, linked, m)
    referenced = (bool(REFERENCE_BEFORE.search(before)) and not ATTRIBUTE_BEFORE.search(before)
                  and not TASTE_BEFORE.search(before))  # "I like blues" is a taste, "like Blue" an artist
    if m.score < 100 and any(a.score >= 100 for a in attributes):
        return attributes[0]  # part of a title never beats a whole attribute ("hip hop" the genre)
    if not attributes:
        if m.score >= 100 or referenced or len(linked.tokens) <= 5:
            return m
        return None  # part of a title, said in passing: its words are read as words
    # A span that is both an item's title and an attribute ("electronic", "Death"): the wording decides.
    if referenced or _capitalised(text, linked, m) or (m.end - m.start) >= 3:
        return m
    return attributes[0]


def resolve(text: str, linked: Linked) -> Readings:
    """Readings, exclusions and boolean groups -> constraints and named items."""
    r = Readings()
    picks = choose(text, linked)
    excluding = False
    previous: Mention | None = None
    groups: list[list[tuple[Mention, str]]] = []  # runs of same-kind attributes with the joining word
    for m, others in picks:
        gap = text[linked.tokens[previous.end - 1].end:linked.tokens[m.start].start] if previous else ""
        connector = _CONNECTOR.match(gap) if previous is not None else None
        joined = connector is not None
        if excluded_before(text, linked, m):
            excluding = True
        elif not joined:
            excluding = False
        word = (connector.group(1) or ",") if connector is not None else ""
        r.used_tokens.update(range(m.start, m.end))
        if others and any(o.kind == "title" for o in others) and m.kind != "title":
            r.notes.append(f"read '{m.text}' as a {'kind of item' if m.kind == 'noun' else m.kind}, not the "
                           f"title of that name")
        elif others and m.kind == "title" and any(o.kind != "title" for o in others):
            r.notes.append(f"read '{m.text}' as the item of that name")
        if excluding:
            r.excluded.append(m)
        else:
            r.chosen.append(m)
        if m.kind != "title":
            if groups and joined and groups[-1][-1][0].kind == m.kind and (m in r.excluded) == (groups[-1][-1][0] in r.excluded):
                groups[-1].append((m, word))
            else:
                groups.append([(m, "")])
        previous = m
    c = r.constraints
    alternatives = {id(m): [o for o in others if o.kind == "title"] for m, others in picks}
    for m in r.chosen:
        if m.kind == "title":
            # a partial title several items share ("the Galactic Saga by Orbit"): all of them are meant
            same = [m] + ([o for o in alternatives.get(id(m), []) if o.score == m.score] if m.score < 100 else [])
            r.items += [x.value for x in same if x.value not in r.items]
    for m in r.excluded:
        if m.kind == "title" and m.value not in r.exclude_items:
            r.exclude_items.append(m.value)
    for group in groups:
        kind = group[0][0].kind
        negative = group[0][0] in r.excluded
        # "sci-fi or thriller novel": or-joined runs are alternatives, the rest must all hold.
        segments: list[list[str]] = []
        for m, w in group:
            if segments and w in ("or", "either", "nor"):
                segments[-1].append(m.value)
            else:
                segments.append([m.value])
        if not negative and kind in ("tag", "noun") and len(segments) > 1:
            for segment in segments:
                _add(c, kind, segment, either=len(segment) > 1)
            continue
        values = list(dict.fromkeys(m.value for m, _ in group))
        either = any(len(segment) > 1 for segment in segments)
        if negative:
            {"brand": c.exclude_brands, "tag": c.exclude_tags, "category": c.exclude_categories,
             "noun": c.exclude_title_words}[kind].extend(v for v in values if v not in
                                                         {"brand": c.exclude_brands, "tag": c.exclude_tags,
                                                          "category": c.exclude_categories,
                                                          "noun": c.exclude_title_words}[kind])
        elif kind == "brand":
            c.brands += [v for v in values if v not in c.brands]
        elif kind == "category":
            if len(values) == 1 and not c.category and not c.any_categories:
                c.category = values[0]
            else:  # an item has one category: several named means any of them
                c.any_categories += [v for v in ([c.category] if c.category else []) + values if v not in c.any_categories]
                c.category = None
        elif kind == "tag":
            if either and len(values) > 1:
                c.any_tags += [v for v in values if v not in c.any_tags]
            else:
                c.tags += [v for v in values if v not in c.tags]
        elif kind == "noun":
            if either and len(values) > 1:
                r.notes.append("either of " + " or ".join(values))  # kinds of item: one of them, as words
            else:
                c.title_words += [v for v in values if v not in c.title_words]
    return r


def _add(c: Constraints, kind: str, values: list[str], either: bool) -> None:
    if kind == "tag":
        target = c.any_tags if either else c.tags
        target += [v for v in values if v not in target]
    elif not either:
        c.title_words += [v for v in values if v not in c.title_words]


def mask(text: str, linked: Linked, readings: Readings) -> str:
    """The message with its catalog names replaced by placeholders (what the act classifier compares)."""
    label = {"title": "ITEM", "brand": "BRAND", "category": "CATEGORY", "tag": "TAG", "noun": "CATEGORY"}
    out, last = [], 0
    for m in sorted(readings.chosen + readings.excluded, key=lambda m: m.start):
        start, end = linked.tokens[m.start].start, linked.tokens[m.end - 1].end
        out += [text[last:start], label[m.kind]]
        last = end
    out.append(text[last:])
    return re.sub(r"\s+", " ", "".join(out)).strip()

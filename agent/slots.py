"""The slots people fill in words, read with deterministic patterns: prices (absolute and relative),
superlatives and sorts, counts, positions in the last list, and the cue phrases of each dialogue act."""

from __future__ import annotations

import re

NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "a couple": 2, "a couple of": 2, "a few": 3, "some": None}
ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
            "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "last": -1}
_ORD = r"(first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|sixth|6th|last)"


def _num(text: str) -> float:
    text = text.replace(",", "").strip().lower()
    mult = 1000.0 if text.endswith("k") else 1.0
    return float(text.rstrip("k")) * mult


_MONEY = r"(?:[$€£]\s?)?(\d+(?:[.,]\d+)?k?)(?:\s?(?:\$|€|£|dollars?|usd|eur(?:os?)?|bucks|pounds?|gbp))?"


def extract_prices(text: str) -> tuple[float | None, float | None, str]:
    """(min, max, text with the price phrases removed), from absolute amounts in the message."""
    lo = hi = None
    patterns = [
        (rf"\bbetween\s+{_MONEY}\s+(?:and|to|-)\s+{_MONEY}", "range"),
        (r"(?:[$€£]\s?)(\d+(?:[.,]\d+)?k?)\s?(?:-|to)\s?(?:[$€£]\s?)?(\d+(?:[.,]\d+)?k?)", "range"),
        (rf"\b(?:under|below|less than|cheaper than|up to|at most|max(?:imum)?|no more than|within|<=?)\s*{_MONEY}", "max"),
        (rf"\b(?:over|above|more than|at least|min(?:imum)?|from|>=?)\s*{_MONEY}", "min"),
        (rf"\b(?:around|about|roughly|approximately|~)\s*{_MONEY}", "around"),
        (r"(?:[$€£]\s?(\d+(?:[.,]\d+)?k?))|(?:(\d+(?:[.,]\d+)?k?)\s?(?:dollars?|usd|eur(?:os?)?|bucks|pounds?|gbp))\b", "budget"),
    ]
    for pattern, kind in patterns:
        for m in list(re.finditer(pattern, text, re.I)):
            values = [_num(g) for g in m.groups() if g]
            if not values:
                continue
            if kind == "range" and len(values) >= 2:
                lo, hi = min(values[:2]), max(values[:2])
            elif kind == "max":
                hi = values[0]
            elif kind == "min":
                lo = values[0]
            elif kind == "around":
                lo, hi = round(values[0] * 0.8, 2), round(values[0] * 1.2, 2)
            elif kind == "budget" and hi is None and lo is None:
                hi = values[0]
            text = text.replace(m.group(0), " PRICE ")
    return lo, hi, text


def extract_count(text: str) -> int | None:
    m = re.search(r"\b(?:top|give me|show me|recommend|suggest|list|pick|find)\s+(?:me\s+)?(\d{1,2}|"
                  + "|".join(NUMBER_WORDS) + r")\b", text, re.I)
    if not m:
        # "3 sci-fi books", "five cozy things": a small number before a plural noun (prices are removed first)
        number_words = "|".join(k for k in NUMBER_WORDS if NUMBER_WORDS[k])
        m = re.search(rf"\b(\d{{1,2}}|{number_words})\s+(?!(?:years|months|weeks|days|hours|minutes|kids|people|s)\b)"
                      rf"(?:[a-z][a-z'-]*\s+){{0,2}}?[a-z]+s\b", text, re.I)
    if not m:
        return None
    word = m.group(1).lower()
    value = int(word) if word.isdigit() else NUMBER_WORDS.get(word)
    return None if value is None else max(1, min(int(value), 50))


# Relative prices, resolved against the price distribution of what the rest of the request allows.
CHEAP = re.compile(r"\b(cheap|inexpensive|affordable|budget|low[- ]cost|low[- ]priced|bargain|economical|"
                   r"not (too |very |that |so )?(expensive|pricey|costly)|on a budget)\b")
PREMIUM = re.compile(r"\b(premium|luxury|luxurious|high[- ]end|upscale|top[- ]of[- ]the[- ]line|fancy|splurge|"
                     r"expensive|pricey)\b")
MID = re.compile(r"\b(mid[- ]range|mid[- ]priced|moderately priced|reasonably priced)\b")

SORTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("friends", re.compile(r"\b(most )?(popular|best[- ]?selling|favou?rites?|bought most|liked most|top picks?) "
                           r"(among|with|by|of) (my |all my )?friends\b|\bmy friends'? (favou?rites?|top picks?|"
                           r"most (popular|bought|liked))|\bmost (of )?my friends (bought|like|liked|have)\b")),
    ("price_asc", re.compile(r"\b(cheapest|least expensive|lowest[- ]priced?|lowest price|cheapest one|"
                             r"sort(ed)? by price|price low to high)\b")),
    ("price_desc", re.compile(r"\b(most expensive|priciest|highest[- ]priced?|dearest|costliest|fanciest)\b")),
    ("rating", re.compile(r"\b(highest|best|top)[- ]rated\b|\bbest reviewed\b|\bhighest ratings?\b")),
    ("newest", re.compile(r"\b(newest|latest|most recent|new arrivals?|just (came|come) out|brand[- ]new)\b")),
    ("trend", re.compile(r"\b(trending|hot right now|popular (right )?now|popular lately|popular this (week|month))\b")),
    ("popularity", re.compile(r"\b(most popular|best[- ]selling|bestselling|best[- ]sellers|top[- ]sell(ing|ers?)|"
                              r"most bought|most liked|popular|your best)\b")),
)

# Cue phrases of the dialogue acts and of refinements (lowercased text).
COMPARE = re.compile(r"\b(compare|comparison|comparing|versus|vs\.?|difference between|differences between|"
                     r"which (one )?is better|which (one )?should i (get|buy|choose|pick)|better,|how does .+ compare)\b")
SIMILAR = re.compile(r"\b(like|similar to|similar|alternatives? (to|for)|comparable to|along the lines of|same as|"
                     r"reminds? me of|in the style of|goes? (well )?with|other than|instead of|resembl\w*|"
                     r"if i (liked|enjoyed|loved)|i (really )?(liked|loved|enjoyed)|what else)\b")
CATALOG_Q = re.compile(r"\b(how many|number of|what (kinds?|types?|sorts?) of|which (kinds?|types?|sorts?) of|"
                       r"what (categories|brands|genres|tags)|which (categories|brands|genres|tags)|"
                       r"(list|name) (your|the|all)( the)? (categories|brands|genres|tags)|"
                       r"what (do|does) (you|the shop|the store|the catalog) (sell|have|carry|stock|offer)|"
                       r"do you (sell|carry|stock|have any|offer)|price range|range of prices|"
                       r"how (expensive|pricey|cheap) (are|is) (your|the)|how big is|what('s| is) in (the|your) catalog|"
                       r"(categories|brands|genres) do you)\b")
ITEM_Q = re.compile(r"\b(what about (the )?(first|second|third|fourth|fifth|last|#\d)|what does .{2,60} cost|how much does .{2,60} cost|how much (is|does|are|for)|what('s| is| does) (the )?(price|cost)|price of|cost of|"
                    r"how expensive is|tell me (more )?about|more (details|info|information) (on|about)|"
                    r"details (of|on|about)|describe|what('s| is) (the )?[a-z ]*\bin\b|what is|is (it|that|this) (any )?good|"
                    r"what category|which category|who makes|what brand (is|makes))\b")
WHY = re.compile(r"\bwhy\b")
FRIENDS = re.compile(r"\b(my friends?|my friends'|friends'? (like|liked|bought|buy|picks?|favou?rites?)|"
                     r"people i know|my (mates|buddies|pals|circle))\b")
NO_FRIENDS = re.compile(r"\b(ignore|without|not|don't care about|regardless of|never mind|forget) (what )?my friends\b")
REJECT_ALL = re.compile(r"\b(none of (these|those|them|that)|not (these|those|them|any of (these|those|them))|"
                        r"(these|those|they) (aren't|are not|were not|weren't|don't|do not) (it|right|what i want|good)|"
                        r"something else|other options|show me (others|other ones|more)|different ones|"
                        r"not (quite|really|it|right|yet|there|them|the ones?|what i('m| am) (looking for|after))|"
                        r"nope|not what i (want|need|mean|meant)|try again|no luck|wrong ones?|close,? but|"
                        r"(still|hmm+|um+|well|ah|oh|sorry),? (no|not)\b|still (nothing|not)|"
                        r"i('ve| have) (heard|seen|got|tried) (all )?(those|these|them))\b|^\s*(no|nah|nope)\b")
NEW_TOPIC = re.compile(r"\b(something (else|different) entirely|(entirely|completely|totally) different|"
                       r"change of (plan|topic|subject)|new (search|topic|request)|start (over|again|afresh)|"
                       r"forget (that|those|it|all that|about that|everything)|never ?mind( that)?|"
                       r"on another note|different topic)\b")
ADDITIVE = re.compile(r"\b(also|too|as well|additionally|plus|and also|more|add|should (also )?be|with some|"
                      r"but (more|also)|it needs|it has to be|must be)\b")
CHEAPER = re.compile(r"\b(cheaper|less expensive|lower price|more affordable|too expensive|too pricey|"
                     r"costs? less|for less)\b")
PRICIER = re.compile(r"\b(more expensive|pricier|higher[- ]end|fancier|better quality|premium one|costs? more)\b")
SAME_BRAND = re.compile(r"\b(same brand|same maker|same manufacturer|also by|also from|from the same (brand|maker))\b")
OTHER_BRAND = re.compile(r"\b(another brand|other brand|different brand|different maker|not (from|by) the same "
                         r"(brand|maker)|from someone else)\b")
THAT_BRAND = re.compile(r"\b(that|this|the same|its) (brand|maker|manufacturer)\b")
EXCLUDE_BEFORE = re.compile(r"\b(not|no|without|except|excluding|exclude|anything but|avoid|don't want|do not want|"
                            r"nothing (from|by|of)|no more|other than|hate|dislike|skip|never|minus|but not|"
                            r"i (already )?(have|own|bought|got))\s*(?:(?:the|a|an|any|that|those|these|anything|"
                            r"items?|stuff|products?|things?)\s+){0,2}(?:(?:from|by|of|in)\s+)?$")
OWNED = re.compile(r"\bi (already )?(have|own|bought|got|purchased) (that|this|it|the " + _ORD + r"( one)?|"
                   r"that one|this one)\b")
REFERENCE_BEFORE = re.compile(r"\b(like|similar to|than|as|compare|comparing|vs\.?|versus|and|or|about|of|is|to|"
                              r"called|named|by|with|the)\s*$")
ATTRIBUTE_BEFORE = re.compile(r"\b(some|something|more|any|very|really|good|great|new|old|dark|light|soft|"
                              r"a bit|kind of|sort of|into|love|enjoy|listen to)\s*$")


def position(text: str) -> int | None:
    """A position in the last list: "the second one" -> 2, "#3" -> 3, "the last" -> -1."""
    m = re.search(r"\b" + _ORD + r"\b(?:\s+(?:one|item|pick|option|suggestion))?", text)
    if m:
        return ORDINALS[m.group(1)]
    m = re.search(r"(?:#|number |no\. ?)(\d{1,2})\b", text)
    return int(m.group(1)) if m else None


def positions(text: str) -> list[int]:
    """Every position named ("the first and the third" -> [1, 3]; "the first two" -> [1, 2])."""
    m = re.search(r"\b(first|top) (two|three|2|3)\b", text)
    if m:
        return list(range(1, {"two": 2, "three": 3, "2": 2, "3": 3}[m.group(2)] + 1))
    found = [ORDINALS[g] for g in re.findall(r"\b" + _ORD + r"\b", text)]
    found += [int(g) for g in re.findall(r"(?:#|number |no\. ?)(\d{1,2})\b", text)]
    return list(dict.fromkeys(found))


def anaphora(text: str) -> bool:
    """'that one', 'it', 'this one': the item the conversation is about."""
    return bool(re.search(r"\b(that|this) one\b|\b(it|that|this)\b(?! (is|was) (a|an|the) )", text))


def sort_of(text: str) -> str | None:
    for name, pattern in SORTS:
        if pattern.search(text):
            return name
    return None

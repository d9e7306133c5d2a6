"""How catalog strings are compared: lowercase without accents, words of letters and digits, a light
plural -> singular stem. Used to match tags, titles and brands however they are spelled."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[a-z0-9]+(?:['&][a-z0-9]+)*")


def fold(text: str) -> str:
    """Lowercase without accents (Motörhead -> motorhead)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower().replace("’", "'")


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def stem(word: str) -> str:
    """A light plural -> singular stem (tents -> tent, batteries -> battery, boxes -> box), never below 3 letters."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")) and len(word) > 4:
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def spelling_key(text: str) -> str:
    """One key for the spellings of one tag: "synth-pop", "synth pop", "Synthpop", "'80s" / "80s"."""
    return "".join(stem(w.replace("'", "")) for w in words(text))

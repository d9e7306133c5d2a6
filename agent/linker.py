"""Entity linking against the catalog: the titles, brands, categories and tags a message names, exactly or
fuzzily (typos, partial titles, singular/plural, case, accents).

Everything is indexed once per catalog (phrase keys, an inverted index of title tokens, the token
vocabulary for rapidfuzz), so linking a message costs a few dictionary lookups per word and one fuzzy
lookup per unknown word, whatever the size of the catalog.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from agent.text import FUNCTION_WORDS, KIND_NOUNS, PRICE_WORDS, Token, is_language, key, stem, tokens, words
from catalog.stores import Stores

MAX_PHRASE = 6  # longest phrase looked up (tokens)
CONNECTORS = frozenset({"and", "or", "vs", "versus", "with", "than", "nor"})
KINDS = ("title", "brand", "category", "tag", "noun")


@dataclass(frozen=True)
class Mention:
    kind: str  # "title" | "brand" | "category" | "tag" | "noun" (a word that ends several titles: "tent")
    value: str  # an item id, a brand, a category or a tag, as the catalog spells it
    start: int  # token span [start, end) in the message
    end: int
    text: str  # the words as typed
    score: float  # 100 for an exact match
    items: tuple[int, ...] = ()  # item indices (a title may be shared by several items)


@dataclass
class Linked:
    """Every reading of every span, and the tokens (so callers can look at the words around a mention)."""

    tokens: list[Token]
    mentions: list[Mention] = field(default_factory=list)
    corrected: dict[int, str] = field(default_factory=dict)  # token position -> the catalog word it was read as

    def of(self, kind: str) -> list[Mention]:
        return [m for m in self.mentions if m.kind == kind]

    def covering(self, position: int) -> list[Mention]:
        return [m for m in self.mentions if m.start <= position < m.end]


class EntityLinker:
    def __init__(self, stores: Stores, min_tag_items: int = 1):
        self.stores = stores
        self.min_tag_items = min_tag_items
        self.version = stores.version  # the catalog edit this index was built for (IntentParser rebuilds it)
        self.phrases: dict[tuple[str, ...], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.title_items: dict[str, list[int]] = defaultdict(list)  # item id -> indices (ids are unique: one)
        self.tag_items: dict[str, int] = {}
        titles_by_token: dict[str, set[int]] = defaultdict(set)
        self.title_tokens: list[tuple[str, ...]] = []
        for i, title in enumerate(stores.titles):
            toks = tuple(words(title))
            self.title_tokens.append(key(toks))
            if stores.withdrawn[i]:
                continue  # a withdrawn item is not named any more: it cannot be mentioned, asked about or offered
            if toks:
                self.phrases[key(toks)]["title"].add(str(stores.item_ids[i]))
                self.phrases[key(("".join(toks),))]["title"].add(str(stores.item_ids[i]))
            for t in set(key(toks)):
                titles_by_token[t].add(i)
        self.titles_by_token = {t: np.fromiter(sorted(v), np.int64) for t, v in titles_by_token.items()}
        heads: dict[str, int] = defaultdict(int)
        for i, toks in enumerate(self.title_tokens):
            if len(toks) > 1 and not stores.withdrawn[i]:
                heads[toks[-1]] += 1
        for head, n in heads.items():
            if n >= 2 and len(head) >= 3 and not head.isdigit() and head not in FUNCTION_WORDS:
                self.phrases[(head,)]["noun"].add(head)
        self.brand_names: dict[str, str] = {}
        for brand in set(stores.brands):
            if brand.strip():
                self.phrases[key(words(brand))]["brand"].add(brand)
                self.brand_names[brand.lower()] = brand
        for category in {c for c in stores.categories.tolist() if c}:
            cat_words = words(category)
            self.phrases[key(cat_words)]["category"].add(category)
            self.phrases[key(("".join(cat_words),))]["category"].add(category)
        counts = np.asarray(stores.item_tags.sum(axis=0)).ravel()
        for tag, n in zip(stores.tag_vocab.tolist(), counts.tolist(), strict=True):
            tag_words = words(tag)
            if not tag_words or n < min_tag_items or not any(c.isalpha() for c in tag):
                continue
            self.tag_items[tag] = int(n)
            self.phrases[key(tag_words)]["tag"].add(tag)
            if len(tag_words) > 1:
                self.phrases[key(("".join(tag_words),))]["tag"].add(tag)  # "scifi" for "sci-fi"
        self.vocabulary = sorted({t for phrase in self.phrases for t in phrase if len(t) >= 4})
        self._vocab_set = set(self.vocabulary)
        # Typo candidates by (first letter, length): a fix keeps the first letter and is at most two edits
        # away, so only words of a near length with that letter are compared (not the whole vocabulary).
        self._spelling_buckets: dict[tuple[str, int], list[str]] = defaultdict(list)
        for word in self.vocabulary:
            self._spelling_buckets[(word[0], len(word))].append(word)
        self.known_tokens = {t for phrase in self.phrases for t in phrase}
        text_words: set[str] = set()
        for text in stores.descriptions:
            text_words.update(stem(w) for w in words(text))
        self.text_words = text_words | self.known_tokens  # every word the catalog uses anywhere
        # Words that describe items (descriptions, tags, categories, brands, kinds): what a soft preference
        # may be. A word found only in titles ("luck" in "Lucky Twice", "make" in an artist's name) is a name's
        # part, not a description: it never pulls items by text similarity.
        described = {t for phrase, found in self.phrases.items() if set(found) - {"title"} for t in phrase}
        self.attribute_words = text_words | described
        self.token_df = {t: len(v) for t, v in self.titles_by_token.items()}

    # --- linking -------------------------------------------------------------------------------------
    def link(self, message: str, limit_tokens: int = 120) -> Linked:
        toks = tokens(message)[:limit_tokens]
        linked = Linked(toks)
        stems = [stem(t.text) for t in toks]
        for pos, s in enumerate(stems):
            if s not in self.known_tokens and not is_language(toks[pos].text) and len(s) >= 4 and not s.isdigit():
                fixed = self._correct(s)
                if fixed:
                    linked.corrected[pos] = fixed
                    stems[pos] = fixed
        for size in range(min(MAX_PHRASE, len(toks)), 0, -1):
            for start in range(len(toks) - size + 1):
                span = tuple(stems[start:start + size])
                found = self.phrases.get(span)
                if not found:
                    continue
                if size == 1 and self._weak_single(toks[start].text, found):
                    continue
                if size > 1 and all(is_language(t.text) for t in toks[start:start + size]):
                    continue  # "i love", "seen it": words of the sentence, not an entity
                if size == 1 and set(found) == {"noun"} and self._modifies(stems, start):
                    continue  # "light camping gear": an adjective here, not the kind of item "light"
                fuzzy = any(p in linked.corrected for p in range(start, start + size))
                text = message[toks[start].start:toks[start + size - 1].end]
                for kind in KINDS:
                    for value in sorted(found.get(kind, ())):
                        items = self._items(kind, value)
                        linked.mentions.append(Mention(kind, value, start, start + size, text,
                                                       90.0 if fuzzy else 100.0, items))
        linked.mentions = self._canonical_tags(linked.mentions, stems)
        linked.mentions += self._partial_titles(toks, stems, linked)
        # A reading inside a longer one ("metal" in "death metal", "fi" in "sci fi") is not a reading.
        spans = {(m.start, m.end) for m in linked.mentions if m.score >= 100}
        linked.mentions = [m for m in linked.mentions
                           if not any(a <= m.start and m.end <= b and (b - a) > (m.end - m.start) for a, b in spans)]
        return linked

    def _canonical_tags(self, mentions: list[Mention], stems: list[str]) -> list[Mention]:
        """One tag per span, the one most items carry ("hip-hop" over "hip hop", "female vocalists" over
        "female vocalist": spellings of one tag); and a tag that only adds a kind noun to a more used tag
        ("pop music", "french bands", "new wave artists") yields to it: the noun names what is asked for."""
        best: dict[tuple[int, int], int] = {}
        for m in mentions:
            if m.kind == "tag":
                best[(m.start, m.end)] = max(best.get((m.start, m.end), 0), self.tag_items.get(m.value, 0))
        out: list[Mention] = []
        kept: set[tuple[int, int]] = set()
        for m in mentions:
            if m.kind != "tag":
                out.append(m)
                continue
            span, n = (m.start, m.end), self.tag_items.get(m.value, 0)
            if n < best[span] or span in kept:
                continue
            if m.end - m.start > 1 and stems[m.end - 1] in KIND_NOUNS:
                inner = self.phrases.get(tuple(stems[m.start:m.end - 1]), {}).get("tag", set())
                if any(self.tag_items.get(t, 0) > n for t in inner):
                    continue
            kept.add(span)
            out.append(m)
        return out

    def _modifies(self, stems: list[str], pos: int) -> bool:
        """The word is followed by another catalog word or a kind noun, so it describes that one."""
        if pos + 1 >= len(stems):
            return False
        following = stems[pos + 1]
        return following in KIND_NOUNS or (following in self.known_tokens and following not in FUNCTION_WORDS)

    def _weak_single(self, word: str, found: dict[str, set[str]]) -> bool:
        """A single common word ("love", "live", "the") is never an entity on its own; a kind noun ("artist")
        is one only when the catalog uses it as a category."""
        if len(word) < 3 and not word.isdigit():
            return True
        if word in PRICE_WORDS:
            return False
        if word in FUNCTION_WORDS or is_language(word):
            return not found.get("category")
        if word in KIND_NOUNS:
            return not found.get("category")
        return False

    def _correct(self, word: str) -> str | None:
        """The catalog word a typo stands for: one edit away (two for words of 9 letters or more), same first
        letter; a real word that merely resembles a catalog word is left alone by that bound. Only the words
        of that first letter and a length within the bound are compared."""
        if len(word) < 5:
            return None
        allowed = 1 if len(word) < 9 else 2
        candidates = sorted(w for n in range(len(word) - allowed, len(word) + allowed + 1)
                            for w in self._spelling_buckets.get((word[0], n), ()))
        hit = process.extractOne(word, candidates, scorer=OSA.distance, score_cutoff=allowed)
        return None if hit is None else str(hit[0])

    def _items(self, kind: str, value: str) -> tuple[int, ...]:
        if kind == "title":
            i = self.stores.item_index.get(value)
            return () if i is None or self.stores.withdrawn[i] else (i,)
        return ()

    def _partial_titles(self, toks: list[Token], stems: list[str], linked: Linked) -> list[Mention]:
        """Titles named by part of their words ("the Trail DAC" for "Lumen Trail DAC"): a run of two or more
        words that all belong to one title and cover most of it, or include a word few titles share."""
        exact = {(m.start, m.end) for m in linked.mentions if m.kind == "title"}
        brands = {m.value.lower() for m in linked.mentions if m.kind == "brand"}
        out: list[Mention] = []
        n = len(toks)
        for start in range(n):
            for end in range(min(n, start + MAX_PHRASE), start + 1, -1):
                span = stems[start:end]
                if any((a <= start and end <= b) for a, b in exact) or any(is_language(toks[p].text) for p in (start, end - 1)):
                    continue
                if any(s in CONNECTORS for s in span):
                    continue  # "the X and the Y" is two names, never one
                content = [s for s in span if s not in FUNCTION_WORDS]
                if len(content) < 2 or any(s not in self.titles_by_token for s in content):
                    continue
                common = self.titles_by_token[content[0]]
                for s in content[1:]:
                    common = np.intersect1d(common, self.titles_by_token[s], assume_unique=True)
                    if common.size == 0:
                        break
                if common.size > 3 and brands:  # "the Galactic Saga by Orbit": the brand narrows it down
                    common = common[np.isin(self.stores.brand_keys[common], list(brands))]
                if common.size == 0 or common.size > 3:
                    continue
                for i in common.tolist():
                    title = self.title_tokens[i]
                    brand = set(key(words(self.stores.brands[i])))
                    if not set(content) - brand - {title[-1]}:
                        continue  # "Harbor headphones" is a brand and a kind of item, not this title
                    coverage = len(set(content)) / max(len(set(title)), 1)
                    rare = min(self.token_df[s] for s in content) <= 3
                    if coverage >= 0.6 or (rare and coverage >= 0.4):
                        text = " ".join(t.raw for t in toks[start:end])
                        score = float(fuzz.token_set_ratio(" ".join(content), " ".join(title)))
                        out.append(Mention("title", str(self.stores.item_ids[i]), start, end, text, min(score, 95.0), (i,)))
                if any(m.start == start for m in out):
                    break
        return out

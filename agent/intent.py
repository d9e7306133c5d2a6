"""A user message (+ session) -> a typed Intent.

A deterministic extractor handles everything that must not depend on a small model: prices and
currencies, counts, category and tag names that exist in the catalog, "not X" exclusions, references
to earlier turns, out-of-scope and other-user requests. An optional schema-constrained LLM pass may
add soft preferences; its category/tags are accepted only when the message itself supports them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from agent.prompts import PromptSet
from catalog.constraints import Constraints
from catalog.stores import Stores
from llm_client.client import LLM, CallRecord, LLMError

NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "a couple": 2, "a few": 3, "some": None}
ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
            "fifth": 5, "5th": 5, "last": -1}
STOPWORDS = set(["none", "a", "an", "the", "and", "or", "but", "if", "then", "so", "to", "of", "in", "on", "at", "by", "for", "with", "without", "from", "into", "onto", "about", "as", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "have", "has", "had", "i", "me", "my", "mine", "you", "your", "yours", "we", "our", "us", "they", "them", "their", "it", "its", "this", "that", "these", "those", "what", "which", "who", "whom", "whose", "where", "when", "why", "how", "all", "any", "some", "no", "not", "nor", "only", "own", "same", "such", "than", "too", "very", "can", "could", "should", "would", "will", "shall", "may", "might", "must", "just", "also", "please", "thanks", "thank", "hi", "hello", "hey", "want", "wants", "wanted", "need", "needs", "looking", "look", "show", "give", "find", "get", "recommend", "recommendations", "recommendation", "suggest", "suggestions", "something", "anything", "things", "thing", "stuff", "items", "item", "options", "option", "ideas", "idea", "picks", "pick", "like", "likes", "love", "loved", "good", "great", "nice", "best", "better", "more", "less", "most", "least", "new", "cheap", "cheaper", "expensive", "price", "priced", "cost", "costs", "under", "over", "below", "above", "between", "around", "about", "up", "max", "min", "maximum", "minimum", "at", "most", "least", "dollars", "dollar", "usd", "eur", "euros", "bucks", "pounds", "gbp", "friend", "friends", "buy", "bought", "purchase", "purchased", "maybe", "really", "much", "many", "one", "ones", "lot", "lots", "kind", "sort", "type", "else", "instead", "other", "another", "again", "still", "now", "today", "gift", "gifts", "present", "someone", "somebody", "him", "her", "he", "she", "his", "hers", "me.", "i'm", "i'd", "i've", "it's", "that's", "don't", "dont", "won't", "wont", "can't", "cant", "isn't", "similar", "different", "same", "style", "stylish", "quality", "well", "also", "bit", "little", "big", "small", "large", "tell", "know", "go", "going", "let", "lets", "let's", "okay", "ok", "yes", "yeah", "sure", "fine", "cool", "gear", "stuff", "first", "second", "third", "fourth", "fifth", "last", "next", "previous", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twenty", "email", "mail", "send", "share", "order", "cart", "please", "pls", "plz", "thx", "ones"])
OUT_OF_SCOPE = re.compile(
    r"\b((buy|order|purchase) (it|this|that|them|these|those|the [a-z0-9]+ ones?|one of (them|these|those))|add (it |this |that )?to (my )?(cart|basket)|check ?out|"
    r"place an order|pay for|e-?mail|send (a |an )?(message|mail|text|email)|message my|text my|post (it|this)|"
    r"share (it|this) (with|on)|delete my|cancel my)\b", re.I)
PROMPT_EXTRACTION = re.compile(
    r"\b(system prompt|your (instructions|rules|prompt|guidelines)|repeat (the|your|all) (instructions|prompt|text above)|"
    r"verbatim|ignore (all |any )?(previous|prior|above) (instructions|rules)|developer mode|jailbreak)\b", re.I)
HISTORY_WORDS = (r"(buy|bought|buys|purchased|purchases?|history|orders?|ordered|listened|listens|listening|likes|liked|"
                 r"has|owns|viewed|activity|cart|wishlist|library)")


@dataclass
class Intent:
    constraints: Constraints = field(default_factory=Constraints)
    preferences: str = ""  # soft wishes in words (goes to semantic search)
    mentioned_items: list[str] = field(default_factory=list)  # catalog ids named in the message
    exclude_items: list[str] = field(default_factory=list)
    count: int | None = None
    use_friends: bool | None = None  # None: default weighting; True: emphasise; False: ignore friends
    unknown_terms: list[str] = field(default_factory=list)  # categories/tags asked for but not in the catalog
    refinements: list[str] = field(default_factory=list)  # "cheaper", "more_like:2", "reject:1", "reject:last"
    out_of_scope: str | None = None  # "action" (buy, email...), "other_user", "instructions"
    question: str | None = None  # "why", "price", "details"
    question_target: int | str | None = None  # position in the last list, or an item id
    llm_call: CallRecord | None = None

    def summary(self) -> dict[str, Any]:
        return {"constraints": self.constraints.to_dict(), "preferences": self.preferences,
                "mentioned_items": self.mentioned_items, "exclude_items": self.exclude_items, "count": self.count,
                "use_friends": self.use_friends, "unknown_terms": self.unknown_terms,
                "refinements": self.refinements, "out_of_scope": self.out_of_scope, "question": self.question,
                "question_target": self.question_target}


def _num(text: str) -> float:
    text = text.replace(",", "").strip().lower()
    mult = 1000.0 if text.endswith("k") else 1.0
    return float(text.rstrip("k")) * mult


_MONEY = r"(?:[$€£]\s?)?(\d+(?:[.,]\d+)?k?)(?:\s?(?:\$|€|£|dollars?|usd|eur(?:os?)?|bucks|pounds?|gbp))?"


def extract_prices(text: str) -> tuple[float | None, float | None, str]:
    """(min, max, text with the price phrases removed)."""
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
            text = text.replace(m.group(0), " ")
    return lo, hi, text


def extract_count(text: str) -> int | None:
    m = re.search(r"\b(?:top|give me|show me|recommend|suggest|list)\s+(\d{1,2}|" + "|".join(NUMBER_WORDS) + r")\b", text, re.I)
    if not m:
        # "3 sci-fi books", "five cozy things": a small number before a plural noun (prices are removed first)
        words = "|".join(k for k in NUMBER_WORDS if NUMBER_WORDS[k])
        m = re.search(rf"\b(\d{{1,2}}|{words})\s+(?!(?:years|months|weeks|days|hours|minutes|kids|people)\b)"
                      rf"(?:[a-z][a-z'-]*\s+){{0,2}}?[a-z]+s\b", text, re.I)
    if not m:
        return None
    word = m.group(1).lower()
    value = int(word) if word.isdigit() else NUMBER_WORDS.get(word)
    return None if value is None else max(1, min(int(value), 50))


def _stem(word: str) -> str:
    for suffix in ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


class IntentParser:
    def __init__(self, stores: Stores, prompts: PromptSet | None = None, llm: LLM | None = None,
                 min_tag_items: int = 2):
        self.stores = stores
        self.prompts = prompts
        self.llm = llm
        self.categories = sorted({c for c in stores.categories.tolist() if c})
        self.category_forms: dict[str, str] = {}
        for c in self.categories:
            for form in {c, _stem(c), c.rstrip("s")}:
                self.category_forms[form] = c
        tag_counts = stores.item_tags.sum(axis=0).A1
        self.tags = {t: int(n) for t, n in zip(stores.tag_vocab.tolist(), tag_counts, strict=True)
                     if n >= min_tag_items and t not in STOPWORDS and len(t) > 2}
        self.tag_forms: dict[str, str] = {}
        for t in self.tags:
            # "board-games" is also asked for as "board games" or "board game".
            for form in {t, t.replace("-", " "), t.replace("_", " ")}:
                words = form.split()
                self.tag_forms.setdefault(form, t)
                for last in ({_stem(words[-1]), words[-1].removesuffix("s")} if words else set()):
                    self.tag_forms.setdefault(" ".join([*words[:-1], last]), t)
        self.max_tag_words = max((len(f.split()) for f in self.tag_forms), default=1)
        titles = stores.catalog["title"].astype(str).tolist()
        self.title_index = {t.lower(): str(i) for t, i in zip(titles, stores.item_ids, strict=True)}
        self.vocabulary = self._catalog_vocabulary()
        self.user_ids = {u.lower() for u in stores.user_ids.tolist()}
        self.user_names = {n.lower(): n for n in stores.user_names.tolist() if n}
        self.first_names = {n.split()[0].lower() for n in stores.user_names.tolist() if n}

    def _catalog_vocabulary(self) -> set[str]:
        words: set[str] = set()
        for col in ("title", "category", "tags", "description"):
            for text in self.stores.catalog[col].fillna("").astype(str).str.lower():
                words.update(re.findall(r"[a-z][a-z'&-]+", text.replace("|", " ")))
        return words | {_stem(w) for w in words}

    # --- the deterministic extractor ---------------------------------------------------------
    def parse(self, message: str, use_llm: bool = False, budget_s: float | None = None) -> Intent:
        """The deterministic intent, merged with the model's reading when ``use_llm`` (within ``budget_s``)."""
        intent = Intent()
        text = " ".join(message.split())
        lowered = text.lower()
        if OUT_OF_SCOPE.search(lowered):
            intent.out_of_scope = "action"
        if self._asks_about_other_user(lowered):
            intent.out_of_scope = "other_user"
        if PROMPT_EXTRACTION.search(lowered):
            intent.out_of_scope = "instructions"
        self._questions(lowered, intent)
        self._refinements(lowered, intent)
        lo, hi, rest = extract_prices(lowered)
        intent.constraints.price_min, intent.constraints.price_max = lo, hi
        intent.count = extract_count(rest)
        if re.search(r"\b(ignore|without|not|don't care about|regardless of) (what )?my friends\b", lowered):
            intent.use_friends = False
        elif re.search(r"\bmy friends?\b|\bfriends'? (like|bought|picks|favou?rites)\b", lowered):
            intent.use_friends = True
        rest = self._exclusions(rest, intent)
        rest = self._mentions(rest, intent)
        self._categories_and_tags(rest, intent)
        intent.preferences = self._soft_words(rest, intent)
        if use_llm and self.llm is not None and self.prompts is not None and not intent.out_of_scope:
            self._merge_llm(text, intent, budget_s)
        return intent

    def _asks_about_other_user(self, lowered: str) -> bool:
        tokens = set(re.findall(r"[a-z0-9_.-]+", lowered))
        if tokens & self.user_ids and re.search(r"\b(user|customer|account|id)\b|" + HISTORY_WORDS, lowered):
            return True
        if re.search(r"\b(other|another) (user|customer|people's|person's)\b.*" + HISTORY_WORDS, lowered):
            return True
        m = re.search(r"\b(?:what|which|show|list|tell)\b.{0,40}?\b([a-z]+)(?:\s[a-z]\.?)?(?:'s)?\s+" + HISTORY_WORDS,
                      lowered)
        if m and m.group(1) in self.first_names:
            return True
        m = re.search(r"\b([a-z]+)'s (?:[a-z]+ )?(purchases?|history|orders?|listening|library|cart|wishlist|activity)\b",
                      lowered)
        return bool(m and m.group(1) not in {"friend", "friends", "today", "it", "everyone"})

    def _questions(self, lowered: str, intent: Intent) -> None:
        position = self._position(lowered)
        if re.search(r"\bwhy\b", lowered):
            intent.question, intent.question_target = "why", position or 1
        elif re.search(r"\b(how much|what('s| is) the price|price of|cost of|how expensive)\b", lowered):
            intent.question, intent.question_target = "price", position or self._title_in(lowered) or 1
        elif re.search(r"\b(tell me (more )?about|details (of|on|about)|describe|what is)\b", lowered):
            target = position or self._title_in(lowered)
            if target:
                intent.question, intent.question_target = "details", target

    def _position(self, lowered: str) -> int | None:
        m = re.search(r"\b(first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|last)\b(?:\s+(?:one|item|pick|option))?", lowered)
        if m:
            return ORDINALS[m.group(1)]
        m = re.search(r"(?:#|number |no\. ?)(\d{1,2})\b", lowered)
        return int(m.group(1)) if m else None

    def _title_in(self, lowered: str) -> str | None:
        for title, item_id in self.title_index.items():
            if len(title) > 3 and title in lowered:
                return item_id
        return None

    def _refinements(self, lowered: str, intent: Intent) -> None:
        if re.search(r"\b(cheaper|less expensive|lower price|more affordable|too expensive|too pricey)\b", lowered):
            intent.refinements.append("cheaper")
        if re.search(r"\b(more expensive|pricier|higher end|fancier|premium one)\b", lowered):
            intent.refinements.append("pricier")
        m = re.search(r"\bmore like (?:the )?(first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|last|#\d+|number \d+|that|this|it)\b", lowered)
        if m:
            word = m.group(1)
            pos = ORDINALS.get(word) or (int(re.sub(r"\D", "", word)) if re.search(r"\d", word) else -1)
            intent.refinements.append(f"more_like:{pos}")
        m = re.search(r"\b(not|no|don't like|dislike|hate|skip|remove|drop)\b\s+(?:the\s+)?(that one|this one|that|this|it|first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|last)(?:\s+one)?\b", lowered)
        if m:
            word = m.group(2).replace(" one", "")
            pos = ORDINALS.get(word, -1) if word not in {"that", "this", "it"} else 0
            intent.refinements.append(f"reject:{pos}")
        if re.search(r"\b(something else|other options|show me others|different ones|none of (these|those|them))\b", lowered):
            intent.refinements.append("reject:all")

    def _exclusions(self, text: str, intent: Intent) -> str:
        pattern = r"\b(?:not|no|without|except|excluding|anything but|avoid|don't want|do not want|nothing)\s+(?:any\s+)?([a-z][a-z' -]{1,40}?)(?=[,.;!?]|\s+(?:and|or|but|please|under|over|below|above|for)\b|$)"
        for m in list(re.finditer(pattern, text)):
            phrase = m.group(1).strip()
            if phrase in {"that one", "this one", "that", "this", "it", "the first", "the second", "the last"}:
                continue
            words = phrase.split()
            matched = False
            for n in range(len(words), 0, -1):
                cand = " ".join(words[:n])
                stem = " ".join(_stem(w) for w in words[:n])
                if cand in self.category_forms or stem in self.category_forms:
                    intent.constraints.exclude_categories.append(self.category_forms.get(cand) or self.category_forms[stem])
                    matched = True
                    break
                if cand in self.tag_forms or stem in self.tag_forms:
                    intent.constraints.exclude_tags.append(self.tag_forms.get(cand) or self.tag_forms[stem])
                    matched = True
                    break
                if cand in self.title_index:
                    intent.exclude_items.append(self.title_index[cand])
                    matched = True
                    break
                titled = self._items_titled(cand)
                if titled:
                    intent.exclude_items.extend(i for i in titled if i not in intent.exclude_items)
                    matched = True
                    break
            if (not matched and phrase not in STOPWORDS and "friend" not in phrase
                    and any(w not in STOPWORDS for w in words)):
                intent.unknown_terms.append(f"not {phrase}")
            text = text.replace(m.group(0), " ")
        return text

    def _items_titled(self, words: str) -> list[str]:
        """Items whose title contains these words (singular or plural), e.g. "candles" -> every candle."""
        if len(words) < 3 or words in STOPWORDS:
            return []
        forms = {words, _stem(words), words[:-1] if words.endswith("s") else words}
        pattern = re.compile(r"\b(" + "|".join(re.escape(f) for f in forms) + r")(s|es)?\b")
        return [item_id for title, item_id in self.title_index.items() if pattern.search(title)]

    def _mentions(self, text: str, intent: Intent) -> str:
        for title, item_id in sorted(self.title_index.items(), key=lambda t: -len(t[0])):
            if len(title) > 3 and re.search(rf"(?<![a-z0-9]){re.escape(title)}(?![a-z0-9])", text):
                if item_id not in intent.mentioned_items and item_id not in intent.exclude_items:
                    intent.mentioned_items.append(item_id)
                text = text.replace(title, " ")
        return text

    def _categories_and_tags(self, text: str, intent: Intent) -> None:
        tokens = re.findall(r"[a-z][a-z&'-]*", text)
        used = [False] * len(tokens)
        for size in range(min(self.max_tag_words, 4), 0, -1):
            for start in range(len(tokens) - size + 1):
                if any(used[start:start + size]):
                    continue
                gram = " ".join(tokens[start:start + size])
                if size == 1 and gram in self.category_forms and not intent.constraints.category:
                    intent.constraints.category = self.category_forms[gram]
                    used[start] = True
                elif gram in self.tag_forms and self.tag_forms[gram] not in intent.constraints.exclude_tags:
                    tag = self.tag_forms[gram]
                    if tag != intent.constraints.category and tag not in intent.constraints.tags:
                        intent.constraints.tags.append(tag)
                    for k in range(start, start + size):
                        used[k] = True
        # Nouns that nothing in the catalog mentions are reported back, not silently dropped.
        for token, was_used in zip(tokens, used, strict=True):
            if (not was_used and token not in STOPWORDS and len(token) > 3 and token not in self.vocabulary
                    and _stem(token) not in self.vocabulary and token not in self.first_names
                    and token not in {t for t in intent.unknown_terms}):
                intent.unknown_terms.append(token)

    def _soft_words(self, text: str, intent: Intent) -> str:
        words = [w for w in re.findall(r"[a-z][a-z'&-]*", text) if w not in STOPWORDS]
        known = [w for w in words if w in self.vocabulary or _stem(w) in self.vocabulary]
        return " ".join(dict.fromkeys(known))

    # --- the optional LLM pass ------------------------------------------------------------------
    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "category": {"anyOf": [{"type": "string", "enum": self.categories[:200]}, {"type": "null"}]},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 4},
                "preferences": {"type": "string", "maxLength": 120},
                "exclude": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 4},
                "count": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 50}, {"type": "null"}]},
            },
            "required": ["category", "tags", "preferences", "exclude", "count"],
            "additionalProperties": False,
        }

    def _merge_llm(self, message: str, intent: Intent, budget_s: float | None = None) -> None:
        assert self.llm is not None and self.prompts is not None
        messages = [{"role": "system", "content": self.prompts.render("system")},
                    {"role": "user", "content": self.prompts.render(
                        "intent", categories=self.categories[:60], message=message[:1000])}]
        try:
            response = self.llm.chat(messages, schema=self.schema(), max_tokens=120, deadline_s=budget_s)
        except LLMError as exc:
            intent.llm_call = CallRecord("intent", False, 0.0, error=str(exc), messages=messages)
            return
        intent.llm_call = CallRecord("intent", True, response.latency_ms, response.prompt_tokens,
                                     response.completion_tokens, raw=response.text, messages=messages)
        try:
            data = json.loads(response.text)
        except ValueError:
            intent.llm_call.ok, intent.llm_call.error = False, "invalid_json"
            return
        lowered = message.lower()
        # The model may only add what the message supports: grounded words, never numbers or ids.
        category = data.get("category")
        if not intent.constraints.category and isinstance(category, str) and category in self.categories \
                and re.search(rf"\b{re.escape(_stem(category))}", lowered):
            intent.constraints.category = category
        for tag in data.get("tags") or []:
            tag = str(tag).lower().strip()
            if tag in self.tags and tag in lowered and tag not in intent.constraints.tags \
                    and tag not in intent.constraints.exclude_tags:
                intent.constraints.tags.append(tag)
        prefs = " ".join(w for w in re.findall(r"[a-z][a-z'-]*", str(data.get("preferences", "")).lower())
                         if w in lowered and w not in STOPWORDS)
        if prefs:
            intent.preferences = " ".join(dict.fromkeys((intent.preferences + " " + prefs).split()))

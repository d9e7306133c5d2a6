"""A user message (+ the catalog) -> a typed Intent: the dialogue act and its slots.

Everything that must not depend on a small model is read deterministically: refusals, prices (absolute
and relative), sorts, counts, positions in the last list, and the catalog's own names (entity linking,
agent/linker.py) with the reading the wording supports (agent/readings.py). The act comes from cue
phrases when they are unambiguous, else from the nearest labelled examples in MiniLM space
(agent/acts.py). An optional schema-constrained LLM pass may add grounded words, never contradict.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from agent import slots
from agent.acts import ActClassifier
from agent.linker import EntityLinker, Linked
from agent.prompts import PromptSet
from agent.readings import Readings, mask, resolve
from agent.slots import extract_count, extract_prices  # noqa: F401  (part of this module's interface)
from agent.text import KIND_NOUNS, PRICE_WORDS, is_language, stem
from catalog.constraints import Constraints
from catalog.stores import Stores
from llm_client.client import LLM, CallRecord, LLMError

OUT_OF_SCOPE = re.compile(
    r"\b((buy|order|purchase) (it|this|that|them|these|those|the [a-z0-9]+ ones?|one of (them|these|those))( for me)?|"
    r"add (it |this |that |them )?to (my )?(cart|basket)|check ?out|"
    r"place an order|pay for|e-?mail|send (a |an )?(message|mail|text|email)|message my|text my|post (it|this)|"
    r"share (it|this) (with|on)|delete my|cancel my)\b", re.I)
PROMPT_EXTRACTION = re.compile(
    r"\b(system prompt|your (instructions|rules|prompt|guidelines)|repeat (the|your|all) (instructions|prompt|text above)|"
    r"verbatim|ignore (all |any )?(previous|prior|above) (instructions|rules)|developer mode|jailbreak)\b", re.I)
HISTORY_WORDS = (r"(buy|bought|buys|purchased|purchases?|history|orders?|ordered|listened|listens|listening|likes|liked|"
                 r"has|owns|viewed|activity|cart|wishlist|library)")
SMALL_TALK = re.compile(r"^\s*(hi|hello|hey|thanks|thank you|cheers|good (morning|afternoon|evening)|bye|goodbye|ok(ay)?|"
                        r"great|cool|nice|how are you)\b[\s!.?,]*(there|a lot|so much|again)?[\s!.?]*$", re.I)
ACTS_NEEDING = {"compare": 2, "similar": 1}
QUESTION = re.compile(r"\?|^\s*(what|which|how|do|does|is|are|can|could|who|where|when|why)\b")  # item references the act cannot do without


@dataclass
class Intent:
    act: str = "recommend"
    act_source: str = "default"  # "cue" | "classifier" | "default"
    act_guess: dict[str, Any] = field(default_factory=dict)
    constraints: Constraints = field(default_factory=Constraints)
    preferences: str = ""  # soft wishes in words (semantic similarity)
    mentioned_items: list[str] = field(default_factory=list)  # catalog ids named in the message, in order
    exclude_items: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # positions of the last list referred to
    anaphora: bool = False  # "that one", "it"
    count: int | None = None
    use_friends: bool | None = None  # None: default weighting; True: emphasise; False: ignore friends
    sort: str | None = None  # price_asc | price_desc | popularity | friends | newest | trend | rating
    price_band: str | None = None  # cheap | mid | premium (resolved against the catalog's prices)
    cheaper_than: str | None = None  # "cheaper than X": an item id
    pricier_than: str | None = None
    changed: list[str] = field(default_factory=list)  # for "like X but ...": cheaper, pricier, same_brand, other_brand
    that_brand: bool = False  # "that brand": the brand of the item in focus
    unknown_terms: list[str] = field(default_factory=list)  # words nothing in the catalog uses
    refinements: list[str] = field(default_factory=list)  # "cheaper", "pricier", "reject:1", "reject:all", "owned:2"
    new_topic: bool = False  # the user said so ("something else entirely", "start over")
    additive: bool = False  # "also", "too", "should also be": add to what was asked before
    out_of_scope: str | None = None  # "action" (buy, email...), "other_user", "instructions", "small_talk"
    question: str | None = None  # "why", "price", "details"
    question_target: int | str | None = None  # position in the last list, or an item id
    catalog_question: str | None = None  # count | categories | brands | price_range | tags | has
    notes: list[str] = field(default_factory=list)  # how an ambiguous phrase was read
    llm_call: CallRecord | None = None

    def summary(self) -> dict[str, Any]:
        return {"act": self.act, "act_source": self.act_source, "constraints": self.constraints.to_dict(),
                "preferences": self.preferences, "mentioned_items": self.mentioned_items,
                "exclude_items": self.exclude_items, "positions": self.positions, "count": self.count,
                "use_friends": self.use_friends, "sort": self.sort, "price_band": self.price_band,
                "cheaper_than": self.cheaper_than, "pricier_than": self.pricier_than, "changed": self.changed,
                "unknown_terms": self.unknown_terms, "refinements": self.refinements, "new_topic": self.new_topic,
                "out_of_scope": self.out_of_scope, "question": self.question,
                "question_target": self.question_target, "catalog_question": self.catalog_question,
                "notes": self.notes}


class IntentParser:
    def __init__(self, stores: Stores, prompts: PromptSet | None = None, llm: LLM | None = None,
                 classifier: ActClassifier | None = None, linker: EntityLinker | None = None):
        self.stores = stores
        self.prompts = prompts
        self.llm = llm
        self.classifier = classifier
        self.linker = linker or EntityLinker(stores)
        self.categories = sorted({c for c in stores.categories.tolist() if c})
        self.catalog_version = stores.version
        self.user_ids = {u.lower() for u in stores.user_ids.tolist()}
        self.first_names = {n.split()[0].lower() for n in stores.user_names.tolist() if n and n.split()}

    def _follow_catalog(self) -> None:
        """After a live catalog edit: index the catalog's words again (new titles, tags, categories; a
        withdrawn item's title no longer links). A few ms on the demo shop, once per edit."""
        if self.catalog_version != self.stores.version:
            version = self.stores.version
            self.linker = EntityLinker(self.stores, self.linker.min_tag_items)
            self.categories = sorted({c for c in self.stores.categories.tolist() if c})
            self.catalog_version = version

    # --- the deterministic reading ------------------------------------------------------------------
    def parse(self, message: str, use_llm: bool = False, budget_s: float | None = None,
              has_list: bool = False) -> Intent:
        """``has_list``: the conversation has an earlier list (refinements and positions refer to it)."""
        self._follow_catalog()
        intent = Intent()
        text = " ".join(message.split())
        lowered = text.lower()
        self._refusals(lowered, intent)
        lo, hi, priced = extract_prices(lowered)
        intent.constraints.price_min, intent.constraints.price_max = lo, hi
        intent.count = extract_count(priced)
        linked = self.linker.link(text)
        # Words inside cue phrases ("from a different maker", "the same brand as") name no entity.
        cue_spans = [m.span() for cue in (slots.OTHER_BRAND, slots.SAME_BRAND, slots.THAT_BRAND)
                     for m in cue.finditer(lowered)]
        linked.mentions = [m for m in linked.mentions if not any(
            a <= linked.tokens[m.start].start and linked.tokens[m.end - 1].end <= b for a, b in cue_spans)]
        readings = resolve(text, linked)
        intent.constraints = _merge(readings.constraints, intent.constraints)
        intent.mentioned_items = list(readings.items)
        intent.exclude_items = list(readings.exclude_items)
        intent.notes += readings.notes
        self._prices_and_sorts(lowered, linked, readings, intent)
        self._references(lowered, intent, has_list)
        if slots.NO_FRIENDS.search(lowered):
            intent.use_friends = False
        elif slots.FRIENDS.search(lowered):
            intent.use_friends = True
        intent.new_topic = bool(slots.NEW_TOPIC.search(lowered))
        intent.additive = bool(slots.ADDITIVE.search(lowered))
        self._words(linked, readings, intent)
        self._act(text, lowered, linked, readings, intent, has_list)
        if use_llm and self.llm is not None and self.prompts is not None and not intent.out_of_scope:
            self._merge_llm(text, intent, budget_s)
        return intent

    def _refusals(self, lowered: str, intent: Intent) -> None:
        if OUT_OF_SCOPE.search(lowered):
            intent.out_of_scope = "action"
        if self._asks_about_other_user(lowered):
            intent.out_of_scope = "other_user"
        if PROMPT_EXTRACTION.search(lowered):
            intent.out_of_scope = "instructions"
        if intent.out_of_scope is None and SMALL_TALK.match(lowered):
            intent.out_of_scope = "small_talk"

    def _asks_about_other_user(self, lowered: str) -> bool:
        toks = set(re.findall(r"[a-z0-9_.-]+", lowered))
        if toks & self.user_ids and re.search(r"\b(user|customer|account|id)\b|" + HISTORY_WORDS, lowered):
            return True
        if re.search(r"\b(other|another) (user|customer|people's|person's)\b.*" + HISTORY_WORDS, lowered):
            return True
        m = re.search(r"\b(?:what|which|show|list|tell)\b.{0,40}?\b([a-z]+)(?:\s[a-z]\.?)?(?:'s)?\s+" + HISTORY_WORDS,
                      lowered)
        if m and m.group(1) in self.first_names:
            return True
        m = re.search(r"\b([a-z]+)'s (?:[a-z]+ )?(purchases?|history|orders?|listening|library|cart|wishlist|activity)\b",
                      lowered)
        return bool(m and m.group(1) not in {"friend", "friends", "today", "it", "everyone", "that", "what"})

    def _prices_and_sorts(self, lowered: str, linked: Linked, readings: Readings, intent: Intent) -> None:
        intent.sort = slots.sort_of(lowered)
        if intent.sort is None and not (intent.constraints.price_min or intent.constraints.price_max):
            excluded = {m.value for m in readings.excluded}
            if slots.CHEAP.search(lowered) and not excluded & {"budget", "cheap"}:
                intent.price_band = "cheap"
            elif slots.MID.search(lowered):
                intent.price_band = "mid"
            elif slots.PREMIUM.search(lowered) and not excluded & {"premium", "luxury"} \
                    and not re.search(r"\b(too|not|less) (so |very )?(expensive|pricey)\b", lowered):
                intent.price_band = "premium"
        # "cheaper than X", "under X's price": the named item sets the cap and is not itself a filter.
        for m in readings.chosen:
            if m.kind != "title":
                continue
            before = lowered[max(0, linked.tokens[m.start].start - 40):linked.tokens[m.start].start]
            if re.search(r"\b(cheaper|less expensive|costs? less|lower priced|under the price of) (than )?(the )?$", before):
                intent.cheaper_than = m.value
            elif re.search(r"\b(pricier|more expensive|costs? more|higher priced|fancier) (than )?(the )?$", before):
                intent.pricier_than = m.value

    def _references(self, lowered: str, intent: Intent, has_list: bool) -> None:
        intent.positions = slots.positions(lowered) if has_list else []
        intent.anaphora = has_list and slots.anaphora(lowered)
        if slots.CHEAPER.search(lowered) and intent.cheaper_than is None:
            intent.refinements.append("cheaper")
        if slots.PRICIER.search(lowered) and intent.pricier_than is None:
            intent.refinements.append("pricier")
        if slots.SAME_BRAND.search(lowered):
            intent.changed.append("same_brand")
        if slots.OTHER_BRAND.search(lowered):
            intent.changed.append("other_brand")
        intent.that_brand = bool(slots.THAT_BRAND.search(lowered)) and "same_brand" not in intent.changed
        if not has_list:
            return
        m = re.search(r"\b(not|no|don't like|dislike|hate|skip|remove|drop|without)\b\s+(?:the\s+)?(that one|this one|"
                      r"that|this|it|first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|last)(?:\s+one)?\b", lowered)
        if m:
            word = m.group(2)
            if word in {"that", "this", "it"}:  # "still not it": the list, not one item of it
                intent.refinements.append("reject:all")
            else:
                word = word.replace(" one", "")
                pos = slots.ORDINALS.get(word, -1) if word not in {"that", "this"} else 0
                intent.refinements.append(f"reject:{pos}")
        m = slots.OWNED.search(lowered)
        if m:
            owned = slots.position(m.group(0))
            intent.refinements.append(f"owned:{owned if owned is not None else 0}")
        if slots.REJECT_ALL.search(lowered) and not any(r.startswith(("reject:", "owned:")) for r in intent.refinements):
            intent.refinements.append("reject:all")

    def _words(self, linked: Linked, readings: Readings, intent: Intent) -> None:
        """Words that name nothing in the catalog's fields: soft preferences when the catalog's text uses
        them, reported back when it does not (never a word of the sentence, a slot cue or a kind noun)."""
        prefs: list[str] = []
        for pos, tok in enumerate(linked.tokens):
            if pos in readings.used_tokens:
                continue
            word = tok.text
            if (is_language(word) or word in KIND_NOUNS or stem(word) in KIND_NOUNS or word.isdigit()
                    or word in PRICE_WORDS or word in {"price", "priced", "costly"} or len(word) < 3
                    or word in self.first_names):
                continue
            spelt = linked.corrected.get(pos, word)
            if stem(spelt) in self.linker.attribute_words:
                prefs.append(spelt)
            elif stem(spelt) in self.linker.text_words:
                continue  # a word of some title only: part of a name, not a wish
            elif len(word) > 3 and re.fullmatch(r"[a-z][a-z'-]*", word) and word not in intent.unknown_terms:
                intent.unknown_terms.append(word)
        intent.preferences = " ".join(dict.fromkeys(prefs))

    def _act(self, text: str, lowered: str, linked: Linked, readings: Readings, intent: Intent,
             has_list: bool) -> None:
        items, positions = intent.mentioned_items, intent.positions
        targets = len(items) + len(positions) + (1 if intent.anaphora and not positions else 0)

        def cue(act: str) -> None:
            intent.act, intent.act_source = act, "cue"

        masked = re.sub(r"(?:[$€£]\s?)?\d+(?:[.,]\d+)?(?:\s?(?:dollars?|usd|eur(?:os?)?|bucks|pounds?))?", "PRICE",
                        mask(text, linked, readings))
        guess = self.classifier.classify(masked) if self.classifier else None
        if guess is not None:
            intent.act_guess = {"act": guess.act, "score": round(guess.score, 3), "similarity": round(guess.similarity, 3)}
        if intent.out_of_scope:
            cue("out_of_scope")
        elif slots.COMPARE.search(lowered) and (targets >= 2 or (has_list and re.search(r"\b(them|these|those|the two|both)\b", lowered))):
            cue("compare")
        elif slots.CATALOG_Q.search(lowered) and not intent.sort and not items:
            cue("catalog_question")
            intent.catalog_question = _catalog_question(lowered)
        elif (slots.WHY.search(lowered) and (targets or has_list)) or (slots.ITEM_Q.search(lowered) and targets
                                                                        and not slots.SIMILAR.search(lowered)):
            cue("item_question")
            intent.question = "why" if slots.WHY.search(lowered) else (
                "price" if re.search(r"\b(how much|price|cost|expensive)\b", lowered) else "details")
            intent.question_target = items[0] if items else (positions[0] if positions else (0 if intent.anaphora else 1))
        elif (slots.SIMILAR.search(lowered) or re.search(r"\bmore like\b", lowered) or intent.changed) \
                and targets and not intent.sort:
            cue("similar")
        elif intent.use_friends:
            cue("friends")
        elif intent.refinements or (has_list and (intent.additive or not _has_content(intent))):
            cue("refine")
        elif guess is not None and guess.act in ("catalog_question", "compare", "similar", "item_question", "friends") \
                and guess.score >= 0.6 and guess.similarity >= 0.6 and targets >= ACTS_NEEDING.get(guess.act, 0) \
                and (guess.act != "item_question" or targets) \
                and (guess.act not in ("catalog_question", "item_question") or QUESTION.search(lowered)):
            intent.act, intent.act_source = guess.act, "classifier"
            if guess.act == "catalog_question":
                intent.catalog_question = _catalog_question(lowered)
            if guess.act == "item_question":
                intent.question = "details"
                intent.question_target = items[0] if items else (positions[0] if positions else 1)
        elif guess is not None and guess.act == "out_of_scope" and not _has_content(intent) and not targets \
                and ((guess.score >= 0.6 and guess.similarity >= 0.5) or guess.similarity >= 0.9):
            intent.act, intent.act_source = "out_of_scope", "classifier"
        elif guess is not None and not _has_content(intent) and not targets and intent.unknown_terms \
                and guess.similarity < 0.3 and not has_list:
            intent.act, intent.act_source, intent.out_of_scope = "out_of_scope", "classifier", "unclear"
        if intent.act == "catalog_question":
            intent.unknown_terms = []  # "what kinds of products do you sell": nothing unknown was asked for

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
        # The model may only add what the message literally supports: grounded words, never numbers or ids.
        c = intent.constraints
        category = data.get("category")
        if not c.category and not c.any_categories and isinstance(category, str) and category in self.categories \
                and category not in c.exclude_categories and re.search(rf"\b{re.escape(stem(category))}", lowered):
            c.category = category
        for tag in data.get("tags") or []:
            tag = str(tag).lower().strip()
            if tag in self.linker.tag_items and tag in lowered and tag not in c.tags and tag not in c.exclude_tags:
                c.tags.append(tag)
        prefs = " ".join(w for w in re.findall(r"[a-z][a-z'-]*", str(data.get("preferences", "")).lower())
                         if w in lowered and not is_language(w))
        if prefs:
            intent.preferences = " ".join(dict.fromkeys((intent.preferences + " " + prefs).split()))


def _merge(a: Constraints, b: Constraints) -> Constraints:
    """The readings' constraints with the price slots."""
    a.price_min, a.price_max = b.price_min, b.price_max
    return a


def _has_content(intent: Intent) -> bool:
    c = intent.constraints
    return bool(not c.is_empty() or intent.mentioned_items or intent.preferences or intent.sort or intent.price_band)


def _catalog_question(lowered: str) -> str:
    if re.search(r"\bbrands?\b|\bmakers?\b|\bmanufacturers?\b", lowered):
        return "brands"
    if re.search(r"\bprice range\b|\brange of prices\b|\bhow (expensive|pricey|cheap)\b|\bcheapest and\b", lowered):
        return "price_range"
    if re.search(r"\bhow many\b|\bnumber of\b|\bhow big\b", lowered):
        return "count"
    if re.search(r"\btags?\b", lowered):
        return "tags"
    if re.search(r"\bdo you (sell|carry|stock|have|offer)\b", lowered) and not re.search(r"\bwhat\b", lowered):
        return "has"
    return "categories"

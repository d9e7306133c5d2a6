"""Grounded explanations: reasons built from each item's evidence, optionally phrased by the LLM, and a
check that every item, person, number and attribute the phrasing names exists in that evidence."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from agent.context import clean
from agent.evidence import evidence_text
from agent.prompts import PromptSet
from catalog.sanitize import strip_instructions
from fusion.items import NO_EVIDENCE, Recommendation
from llm_client.client import LLM, CallRecord, LLMError

# Words an explanation may use freely (sentence glue); everything capitalised or numeric must be evidence.
COMMON = set(["a", "an", "the", "and", "or", "but", "so", "because", "since", "as", "with", "without", "for", "from", "to", "of", "in", "on", "at", "by", "it", "its", "it's", "this", "that", "these", "those", "you", "your", "yours", "we", "our", "they", "them", "their", "he", "she", "his", "her", "i", "my", "me", "is", "are", "was", "were", "be", "been", "fits", "fit", "matches", "match", "match", "suits", "great", "good", "nice", "perfect", "ideal", "popular", "choice", "pick", "option", "similar", "like", "likes", "liked", "loved", "love", "enjoy", "enjoyed", "bought", "buy", "purchased", "friend", "friends", "also", "too", "both", "only", "just", "very", "well", "here", "there", "which", "who", "what", "why", "how", "price", "priced", "under", "over", "within", "budget", "cheap", "affordable", "category", "tagged", "tags", "recommended", "recommend", "because", "it's", "you've", "you'll", "you're", "people", "many", "lots", "several"])
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_UNSAFE = re.compile(r"(https?://|www\.|<[a-z/!]|!\[|\]\(|javascript:|\{|\})", re.I)


@dataclass
class Explanation:
    item_id: str
    text: str
    source: str  # "evidence" or "llm"
    rejected: str | None = None  # why the LLM phrasing was not used


@dataclass
class ExplainOutcome:
    explanations: list[Explanation]
    calls: list[CallRecord] = field(default_factory=list)
    rejected: int = 0


def allowed_vocabulary(rec: Recommendation, currency: str = "") -> tuple[set[str], set[str]]:
    """(words, numbers) that an explanation of this item may mention."""
    e = rec.evidence or NO_EVIDENCE
    texts = [rec.title, rec.category, " ".join(rec.tags), strip_instructions(rec.description), " ".join(e.friends),
             " ".join(e.similar_history), " ".join(e.bought_together), " ".join(e.constraints_met), evidence_text(rec, currency)]
    words = {w.lower().strip("'’") for t in texts for w in _WORD.findall(t)}
    numbers = {n for t in texts for n in _NUMBER.findall(t)}
    numbers.add(str(e.friends_count))
    if rec.price is not None:
        numbers |= {f"{rec.price:.2f}", f"{rec.price:g}", str(int(rec.price)), str(round(rec.price))}
    return words, numbers


class GroundingChecker:
    """Rejects phrasing that names anything outside the item's evidence: numbers, proper names, catalog
    attributes (tags, categories) the item does not have, other items' titles, people, links or markup.

    ``entities`` are all catalog titles and user display names (lowercase): mentioning one that is not
    in this item's evidence is an invented fact even when each word alone is allowed.
    """

    def __init__(self, entities: set[str], forbidden_snippets: list[str] | None = None, currency: str = "",
                 attributes: set[str] | None = None):
        self.entities = {self._norm(e) for e in entities} - {""}
        self.attributes = {a.lower() for a in attributes or set()}
        self.max_len = max((len(e.split()) for e in entities), default=1)
        self.forbidden = [s.lower() for s in forbidden_snippets or [] if s.strip()]
        self.currency = currency

    @staticmethod
    def _norm(text: str) -> str:
        return " ".join(_WORD.findall(text.lower()))

    def problems(self, text: str, rec: Recommendation) -> list[str]:
        issues = []
        if not text.strip():
            return ["empty"]
        if _UNSAFE.search(text):
            issues.append("markup or link")
        lowered = text.lower()
        for snippet in self.forbidden:
            if snippet in lowered:
                issues.append("repeats instructions")
                break
        words, numbers = allowed_vocabulary(rec, self.currency)
        for number in _NUMBER.findall(text):
            if number not in numbers and number.rstrip("0").rstrip(".") not in numbers:
                issues.append(f"number {number} not in evidence")
        sentence_start = True
        for match in re.finditer(r"[A-Za-z][A-Za-z'’-]*|[.!?]", text):
            word = match.group(0)
            if word in ".!?":
                sentence_start = True
                continue
            w = word.lower().strip("'’")
            if w not in words and w not in COMMON:
                if word[0].isupper() and not sentence_start:
                    issues.append(f"names '{word}' which is not in the evidence")
                elif w in self.attributes:
                    issues.append(f"attribute '{w}' is not one of this item's")
            sentence_start = False
        e = rec.evidence or NO_EVIDENCE
        own = {self._norm(t) for t in (rec.title, *e.similar_history, *e.bought_together, *e.friends)}
        tokens = _WORD.findall(lowered)
        for size in range(1, min(self.max_len, 8) + 1):
            for start in range(len(tokens) - size + 1):
                gram = " ".join(tokens[start:start + size])
                if gram in self.entities and gram not in own and not any(gram in o for o in own):
                    issues.append(f"names '{gram}' which is not in this item's evidence")
        return issues


def explanation_schema(ids: list[str]) -> dict[str, object]:
    return {
        "type": "object",
        "properties": {"explanations": {"type": "array", "minItems": len(ids), "maxItems": len(ids), "items": {
            "type": "object",
            "properties": {"id": {"type": "string", "enum": ids}, "text": {"type": "string", "maxLength": 220}},
            "required": ["id", "text"], "additionalProperties": False}}},
        "required": ["explanations"],
        "additionalProperties": False,
    }


class Explainer:
    def __init__(self, checker: GroundingChecker, prompts: PromptSet, llm: LLM | None = None,
                 currency: str = "", show_names: bool = True, max_tokens: int = 400, verb: str = "bought"):
        self.checker = checker
        self.prompts = prompts
        self.llm = llm
        self.currency = currency
        self.show_names = show_names
        self.max_tokens = max_tokens
        self.verb = verb

    def facts(self, rec: Recommendation) -> dict[str, str]:
        return {"id": rec.item_id, "title": clean(rec.title, 70),
                "facts": clean(evidence_text(rec, self.currency, self.show_names, self.verb), 300)}

    def explain(self, recs: list[Recommendation], request_text: str, deadline: float | None = None,
                limit: int = 5) -> ExplainOutcome:
        """Evidence-built reasons for every item; the LLM may rephrase the first ``limit`` of them."""
        base = [Explanation(r.item_id, evidence_text(r, self.currency, self.show_names, self.verb), "evidence")
                for r in recs]
        outcome = ExplainOutcome(base)
        recs = recs[:limit]
        if self.llm is None or not recs:
            return outcome
        remaining = (deadline - time.monotonic()) if deadline is not None else None
        if remaining is not None and remaining < 0.2:
            return outcome
        ids = [r.item_id for r in recs]
        messages = [{"role": "system", "content": self.prompts.render("system")},
                    {"role": "user", "content": self.prompts.render(
                        "explain", request=clean(request_text or "recommendations", 300),
                        items=[self.facts(r) for r in recs])}]
        started = time.monotonic()
        try:
            response = self.llm.chat(messages, schema=explanation_schema(ids), max_tokens=self.max_tokens,
                                     deadline_s=remaining)
        except LLMError as exc:
            outcome.calls.append(CallRecord("explain", False, (time.monotonic() - started) * 1000, error=str(exc),
                                            messages=messages))
            return outcome
        outcome.calls.append(CallRecord("explain", True, response.latency_ms, response.prompt_tokens,
                                        response.completion_tokens, raw=response.text, messages=messages))
        try:
            data = json.loads(response.text)
            proposed = {str(x["id"]): str(x["text"]) for x in data["explanations"] if isinstance(x, dict)}
        except (ValueError, KeyError, TypeError):
            outcome.calls[-1].ok = False
            outcome.calls[-1].error = "invalid_json"
            return outcome
        by_id = {r.item_id: r for r in recs}
        for k, exp in enumerate(base):
            text = proposed.get(exp.item_id)
            if text is None:
                continue
            issues = self.checker.problems(text, by_id[exp.item_id])
            if issues:
                base[k].rejected = "; ".join(issues[:3])
                outcome.rejected += 1
            else:
                base[k] = Explanation(exp.item_id, text.strip(), "llm")
        return outcome

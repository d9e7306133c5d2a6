"""LLM listwise rerank, guarded: schema-constrained ids, unknown ids dropped, duplicates removed, filled
from the fusion order, blended with the fusion rank by a weight chosen on validation users.

Position bias: the model sees the candidates in fusion order and (second pass) in a seeded shuffle;
the passes are merged by mean reciprocal rank. Whatever the model does, the user gets a full list.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from agent.context import RerankContext
from agent.prompts import PromptSet
from llm_client.client import LLM, CallRecord, LLMError


def ranking_schema(ids: list[str], k: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"ranking": {"type": "array", "items": {"type": "string", "enum": list(ids)},
                                   "minItems": k, "maxItems": k}},
        "required": ["ranking"],
        "additionalProperties": False,
    }


@dataclass
class ParsedRanking:
    ids: list[str]  # valid, unique, in the model's order
    json_valid: bool
    invented: list[str]  # ids the model produced that were not candidates
    duplicates: int


def parse_ranking(text: str, allowed: list[str]) -> ParsedRanking:
    """Read {"ranking": [...]} defensively: any garbage yields an empty, flagged result."""
    try:
        data = json.loads(text)
        raw = data["ranking"] if isinstance(data, dict) else None
        if not isinstance(raw, list):
            raise ValueError("no ranking list")
    except (ValueError, KeyError, TypeError):
        return ParsedRanking([], False, [], 0)
    allowed_set = set(allowed)
    seen: list[str] = []
    invented: list[str] = []
    duplicates = 0
    for value in raw:
        value = str(value)
        if value not in allowed_set:
            invented.append(value)
        elif value in seen:
            duplicates += 1
        else:
            seen.append(value)
    return ParsedRanking(seen, True, invented, duplicates)


def merge_passes(orders: list[list[str]]) -> list[str]:
    """Mean reciprocal rank over passes (an id missing from a pass scores 0 there); stable ties."""
    score: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for order in orders:
        for rank, item in enumerate(order):
            score[item] = score.get(item, 0.0) + 1.0 / (rank + 1)
            first_seen.setdefault(item, len(first_seen))
    return sorted(score, key=lambda i: (-score[i], first_seen[i]))


def blend(fusion_order: list[str], llm_order: list[str], weight: float) -> list[str]:
    """final = (1 - w) * fusion position score + w * LLM position score; ties keep the fusion order.

    Position score = 1 - rank / n. Items the LLM did not rank share its worst position.
    """
    n = len(fusion_order)
    if n == 0:
        return []
    llm_rank = {item: r for r, item in enumerate(llm_order)}
    worst = len(llm_order)

    def score(pos: int, item: str) -> float:
        return (1 - weight) * (1 - pos / n) + weight * (1 - llm_rank.get(item, worst) / n)

    scored = [(score(pos, item), -pos, item) for pos, item in enumerate(fusion_order)]
    return [item for _, _, item in sorted(scored, reverse=True)]


@dataclass
class RerankOutcome:
    order: list[str]  # final ids, full candidate list, best first
    llm_used: bool
    fallback_reason: str | None
    llm_order: list[str] = field(default_factory=list)
    blend_weight: float = 0.0
    json_valid: bool = False
    invented: list[str] = field(default_factory=list)
    duplicates: int = 0
    calls: list[CallRecord] = field(default_factory=list)


class Reranker:
    def __init__(self, llm: LLM | None, prompts: PromptSet, passes: int = 2, max_tokens: int = 160,
                 seed: int = 7):
        self.llm = llm
        self.prompts = prompts
        self.passes = passes
        self.max_tokens = max_tokens
        self.seed = seed

    def messages(self, ctx: RerankContext, k: int) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.prompts.render("system")},
                {"role": "user", "content": self.prompts.render("rerank", **ctx.variables(k))}]

    def rerank(self, fusion_order: list[str], ctx: RerankContext, k: int, weight: float,
               deadline: float) -> RerankOutcome:
        """``fusion_order``: all candidate ids best first; ``ctx``: what the model sees (a prefix of them)."""
        if self.llm is None:
            return RerankOutcome(order=fusion_order, llm_used=False, fallback_reason="llm_off")
        shown = list(ctx.candidate_ids)
        k_out = min(k, len(shown))
        if k_out < 2:
            return RerankOutcome(order=fusion_order, llm_used=False, fallback_reason="too_few_candidates")
        schema = ranking_schema(shown, k_out)
        rng = random.Random(f"{self.seed}:{','.join(shown)}")
        layouts = [list(range(len(shown)))]
        if self.passes > 1:
            shuffled = layouts[0][:]
            rng.shuffle(shuffled)
            layouts.append(shuffled)
        outcome = RerankOutcome(order=fusion_order, llm_used=False, fallback_reason=None, blend_weight=weight)
        orders: list[list[str]] = []
        valid_all = True
        for layout in layouts:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                outcome.fallback_reason = outcome.fallback_reason or ("timeout" if not orders else None)
                break
            view = ctx.reordered(layout)
            messages = self.messages(view, k_out)
            try:
                response = self.llm.chat(messages, schema=schema, max_tokens=self.max_tokens, deadline_s=remaining)
            except LLMError as exc:
                outcome.calls.append(CallRecord("rerank", False, (time.monotonic() - (deadline - remaining)) * 1000,
                                                error=str(exc), messages=messages))
                outcome.fallback_reason = exc.reason
                valid_all = False
                break
            parsed = parse_ranking(response.text, shown)
            outcome.calls.append(CallRecord("rerank", parsed.json_valid, response.latency_ms, response.prompt_tokens,
                                            response.completion_tokens, None if parsed.json_valid else "invalid_json",
                                            response.text, messages))
            outcome.invented += parsed.invented
            outcome.duplicates += parsed.duplicates
            valid_all &= parsed.json_valid
            if parsed.ids:
                orders.append(parsed.ids)
            if not parsed.json_valid:
                outcome.fallback_reason = "timeout" if response.truncated else "invalid_json"
        outcome.json_valid = valid_all and bool(orders)
        if not orders:
            outcome.fallback_reason = outcome.fallback_reason or "no_valid_ids"
            return outcome
        llm_order = merge_passes(orders)
        # Fill what the model left out from the fusion order (guard: always a full list).
        llm_order += [i for i in shown if i not in llm_order]
        outcome.llm_order = llm_order
        outcome.llm_used = True
        if outcome.invented or outcome.duplicates:
            outcome.fallback_reason = outcome.fallback_reason or "ids_repaired"
        head = blend(shown, llm_order, weight)
        outcome.order = head + [i for i in fusion_order if i not in set(head)]
        return outcome

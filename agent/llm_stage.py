"""The LLM stage of one request: fused list -> prompt context -> guarded rerank -> grounded explanations.

Whatever the model does (nothing, garbage, a timeout), the caller gets a complete fused list within
the deadline, and the result says what happened (``llm_used``, ``fallback_reason``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.context import RerankContext, build_rerank_context
from agent.explain import Explainer, Explanation, GroundingChecker
from agent.llm import LLM, CallRecord
from agent.prompts import PromptSet
from agent.recommender import Recommendation, RecommendationList, Recommender
from agent.request import RecommendRequest
from agent.rerank import Reranker, RerankOutcome
from agent.settings import Settings
from tools.history import user_history
from tools.scope import UserScope
from tools.social import friends_purchases

CALIBRATION = "llm_calibration.json"


def load_blend_weight(index_dir: Path, identity: str) -> float | None:
    path = index_dir / CALIBRATION
    if not path.is_file():
        return None
    entry = json.loads(path.read_text()).get(identity)
    return None if entry is None else float(entry["weight"])


def save_blend_weight(index_dir: Path, identity: str, weight: float, details: dict[str, object]) -> None:
    path = index_dir / CALIBRATION
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[identity] = {"weight": weight, **details}
    index_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


@dataclass
class StageResult:
    items: list[Recommendation]  # final order, k items
    explanations: list[Explanation]
    fused: RecommendationList
    llm_used: bool
    fallback_reason: str | None
    blend_weight: float
    context: RerankContext | None
    rerank: RerankOutcome | None
    calls: list[CallRecord] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    explanations_rejected: int = 0

    @property
    def tokens(self) -> tuple[int, int]:
        return sum(c.prompt_tokens for c in self.calls), sum(c.completion_tokens for c in self.calls)


class LLMStage:
    def __init__(self, recommender: Recommender, llm: LLM | None, prompts: PromptSet, settings: Settings):
        self.recommender = recommender
        self.llm = llm
        self.prompts = prompts
        self.settings = settings
        stores = recommender.stores
        entities = {t.lower() for t in stores.catalog["title"].astype(str)} | {
            n.lower() for n in stores.user_names.astype(str) if n}
        system_lines = [ln.strip() for ln in prompts.render("system").splitlines() if len(ln.strip()) > 30]
        attributes = set(stores.tag_vocab.tolist()) | set(stores.categories.tolist())
        self.checker = GroundingChecker(entities, forbidden_snippets=[ln[:40] for ln in system_lines],
                                        currency=stores.dataset.currency, attributes=attributes)
        self.reranker = Reranker(llm, prompts, passes=settings.llm.shuffle_passes, seed=settings.llm.seed)
        self._fixed_tokens: int | None = None
        self.weight = self._resolve_weight()

    def _resolve_weight(self) -> float:
        if self.settings.llm.blend_weight is not None:
            return float(self.settings.llm.blend_weight)
        if self.llm is None:
            return 0.0
        calibrated = load_blend_weight(self.settings.index_dir, self.llm.identity())
        return 0.0 if calibrated is None else calibrated

    @property
    def calibrated(self) -> bool:
        return self.llm is not None and (self.settings.llm.blend_weight is not None or load_blend_weight(
            self.settings.index_dir, self.llm.identity()) is not None)

    def count_tokens(self, text: str) -> int:
        counter = getattr(self.llm, "count_tokens", None)
        return int(counter(text)) if counter else max(1, len(text) // 4)

    def fixed_tokens(self) -> int:
        if self._fixed_tokens is None:
            empty = RerankContext("", "", "", "", [], [])
            template = self.prompts.render("system") + self.prompts.render("rerank", **empty.variables(10))
            self._fixed_tokens = self.count_tokens(template) + 16  # chat-template overhead
        return self._fixed_tokens

    def run(self, request: RecommendRequest, request_text: str = "", scope: UserScope | None = None,
            deadline: float | None = None, explain: bool | None = None,
            weight: float | None = None) -> StageResult:
        started = time.monotonic()
        deadline = deadline or started + self.settings.api.turn_deadline_s
        scope = scope or self.recommender.scope(request.user_id)
        wide = max(request.k, self.settings.llm.rerank_candidates)
        fused = self.recommender.recommend(replace(request, k=wide), scope=scope, wanted=request.k)
        timings = {"fusion_ms": fused.timings_ms.get("total_ms", 0.0)}
        weight = self.weight if weight is None else weight
        candidates = fused.items
        fusion_ids = [r.item_id for r in candidates]
        ctx = rerank = None
        order = fusion_ids
        llm_used, reason = False, ("llm_off" if self.llm is None else None)
        calls: list[CallRecord] = []
        if self.llm is not None and len(candidates) >= 2:
            t = time.monotonic()
            shown = candidates[: self.settings.llm.rerank_candidates]
            show_names = self.settings.privacy.friends_detail == "names" and request.use_friends
            ctx = build_rerank_context(
                shown, list(range(len(shown))), user_history(scope, limit=8),
                friends_purchases(scope, limit=5, show_names=show_names) if request.use_friends else [],
                request.constraints, request_text, self.count_tokens, self.settings.llm.context_token_budget,
                self.fixed_tokens(), self.recommender.stores.dataset.currency, show_names,
                self.settings.llm.context_descriptions)
            rerank = self.reranker.rerank(fusion_ids, ctx, request.k, weight, deadline)
            order, llm_used, reason = rerank.order, rerank.llm_used, rerank.fallback_reason
            calls += rerank.calls
            timings["rerank_ms"] = (time.monotonic() - t) * 1000
        by_id = {r.item_id: r for r in candidates}
        final = [by_id[i] for i in order[: request.k]]
        for rank, rec in enumerate(final, start=1):
            rec.rank = rank
        do_explain = self.settings.llm.explain_with_llm if explain is None else explain
        t = time.monotonic()
        explainer = Explainer(self.checker, self.prompts, self.llm if do_explain else None,
                              self.recommender.stores.dataset.currency,
                              self.settings.privacy.friends_detail == "names")
        explained = explainer.explain(final, request_text, deadline, limit=self.settings.llm.explain_items)
        calls += explained.calls
        timings["explain_ms"] = (time.monotonic() - t) * 1000
        timings["total_ms"] = (time.monotonic() - started) * 1000
        return StageResult(items=final, explanations=explained.explanations, fused=fused, llm_used=llm_used,
                           fallback_reason=reason, blend_weight=weight, context=ctx, rerank=rerank, calls=calls,
                           timings_ms=timings, explanations_rejected=explained.rejected)

"""The LLM stage of one request: fused list -> prompt context -> guarded rerank -> grounded explanations.

Whatever the model does (nothing, garbage, a timeout), the caller gets a complete fused list within
the deadline, and the result says what happened (``llm_used``, ``fallback_reason``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from agent.context import RerankContext, build_rerank_context
from agent.explain import Explainer, Explanation, GroundingChecker
from agent.prompts import PromptSet
from agent.rerank import Reranker, RerankOutcome
from agent.settings import AgentConfig
from catalog.scope import UserScope
from fusion.items import Recommendation
from fusion.recommender import RecommendationList, Recommender
from fusion.request import RecommendRequest
from indexing.calibration import Calibration
from llm_client.client import LLM, CallRecord
from tools.history import HistoryEntry, user_history
from tools.social import FriendSignal, friends_purchases


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
    notes: list[str] = field(default_factory=list)  # LLM steps skipped and why

    @property
    def tokens(self) -> tuple[int, int]:
        return sum(c.prompt_tokens for c in self.calls), sum(c.completion_tokens for c in self.calls)


@dataclass(frozen=True)
class StepPolicy:
    active: bool
    why: str


class LLMStage:
    def __init__(self, recommender: Recommender, llm: LLM | None, prompts: PromptSet, settings: AgentConfig,
                 calibrated_weight: float | None = None, calibration: Calibration | None = None):
        """``calibration``: what `fusionrec eval --llm` measured for this model (blend weight, grounding
        acceptance of its explanations), if anything; ``calibrated_weight`` is its weight alone. Explicit
        settings (``llm.blend_weight``, ``llm.explain_with_llm``) win over both."""
        calibration = calibration or Calibration(weight=calibrated_weight)
        self.calibration = calibration
        self.calibrated_weight = calibration.weight if calibrated_weight is None else calibrated_weight
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
        self.weight = self._resolve_weight()
        self.rerank_policy = self._rerank_policy()
        self.explain_policy = self._explain_policy()

    def _resolve_weight(self) -> float:
        if self.settings.llm.blend_weight is not None:
            return float(self.settings.llm.blend_weight)
        if self.llm is None or self.calibrated_weight is None:
            return 0.0
        return float(self.calibrated_weight)

    def _rerank_policy(self) -> StepPolicy:
        """Call the rerank only when its answer can change the order (a blend weight above 0)."""
        if self.llm is None:
            return StepPolicy(False, "no model")
        if self.settings.llm.blend_weight is not None:
            w = float(self.settings.llm.blend_weight)
            return StepPolicy(w > 0, f"llm.blend_weight set to {w:g}")
        if self.calibrated_weight is None:
            return StepPolicy(False, "not calibrated for this model (`fusionrec eval --llm`): weight 0")
        return StepPolicy(self.weight > 0, f"calibrated weight {self.weight:g}")

    def _explain_policy(self) -> StepPolicy:
        """Phrase with the model only where its phrasings were measured to pass the grounding check."""
        if self.llm is None:
            return StepPolicy(False, "no model")
        setting = self.settings.llm.explain_with_llm
        if setting is not None:
            return StepPolicy(bool(setting), f"llm.explain_with_llm set to {str(bool(setting)).lower()}")
        share, needed = self.calibration.explain_acceptance, self.settings.llm.explain_min_acceptance
        if share is None:
            return StepPolicy(False, "grounding acceptance not measured for this model (`fusionrec eval --llm`)")
        measured = f"the grounding check accepted {share:.0%} of {self.calibration.explain_proposed} phrasings"
        return StepPolicy(share >= needed, measured + ("" if share >= needed else f" (needs {needed:.0%})"))

    @property
    def calibrated(self) -> bool:
        return self.llm is not None and (self.settings.llm.blend_weight is not None
                                         or self.calibrated_weight is not None)

    def count_tokens(self, text: str) -> int:
        counter = getattr(self.llm, "count_tokens", None)
        return int(counter(text)) if counter else max(1, len(text) // 4)

    def prompt_tokens(self, ctx: RerankContext) -> int:
        """Tokens of the whole rerank prompt (system + rerank template) rendered from ``ctx``."""
        text = self.prompts.render("system") + self.prompts.render("rerank", **ctx.variables(self.settings.llm.rerank_candidates))
        return self.count_tokens(text) + 16  # chat-template overhead

    def run(self, request: RecommendRequest, request_text: str = "", scope: UserScope | None = None,
            deadline: float | None = None, explain: bool | None = None,
            weight: float | None = None, history: list[HistoryEntry] | None = None,
            friends: list[FriendSignal] | None = None) -> StageResult:
        """``history`` / ``friends``: what the turn's tools already read (read here only when not given)."""
        started = time.monotonic()
        deadline = deadline or started + self.settings.api.turn_deadline_s
        scope = scope or self.recommender.scope(request.user_id)
        wide = max(request.k, self.settings.llm.rerank_candidates)
        fused = self.recommender.recommend(replace(request, k=wide), scope=scope, wanted=request.k)
        timings = {"fusion_ms": fused.timings_ms.get("total_ms", 0.0)}
        policy = self.rerank_policy if weight is None else StepPolicy(weight > 0, f"weight {weight:g}")
        if request.sort or request.source == "friends":
            # An exact order (cheapest first, most friends first) is a fact about the catalog: no model may move it.
            policy = StepPolicy(False, "the order asked for is exact" if request.sort else "most friends first is exact")
        weight = self.weight if weight is None else weight
        candidates = fused.items
        fusion_ids = [r.item_id for r in candidates]
        ctx = rerank = None
        order = fusion_ids
        llm_used, reason = False, ("llm_off" if self.llm is None else None)
        calls: list[CallRecord] = []
        notes: list[str] = []
        if self.llm is not None and len(candidates) >= 2 and not policy.active:
            notes.append(f"rerank skipped: {policy.why}")
        if self.llm is not None and len(candidates) >= 2 and policy.active:
            t = time.monotonic()
            shown = candidates[: self.settings.llm.rerank_candidates]
            show_names = self.settings.privacy.friends_detail == "names" and request.use_friends
            ctx = build_rerank_context(
                shown, list(range(len(shown))), history if history is not None else user_history(scope, limit=8),
                (friends if friends is not None else friends_purchases(scope, limit=5, show_names=show_names))
                if request.use_friends else [],
                request.constraints, request_text, self.prompt_tokens, self.settings.llm.context_token_budget,
                self.recommender.stores.dataset.currency, show_names,
                self.settings.llm.context_descriptions)
            rerank = self.reranker.rerank(fusion_ids, ctx, request.k, weight, deadline)
            order, llm_used, reason = rerank.order, rerank.llm_used, rerank.fallback_reason
            calls += rerank.calls
            timings["rerank_ms"] = (time.monotonic() - t) * 1000
        by_id = {r.item_id: r for r in candidates}
        final = [by_id[i] for i in order[: request.k]]
        for rank, rec in enumerate(final, start=1):
            rec.rank = rank
        do_explain = self.explain_policy.active if explain is None else explain
        if self.llm is not None and not do_explain and final:
            notes.append("explanations from evidence without the model: " + (
                self.explain_policy.why if explain is None else "not asked for"))
        t = time.monotonic()
        explainer = Explainer(self.checker, self.prompts, self.llm if do_explain else None,
                              self.recommender.stores.dataset.currency,
                              self.settings.privacy.friends_detail == "names",
                              verb=self.recommender.stores.dataset.interaction_verb)
        explained = explainer.explain(final, request_text, deadline, limit=self.settings.llm.explain_items)
        calls += explained.calls
        timings["explain_ms"] = (time.monotonic() - t) * 1000
        timings["total_ms"] = (time.monotonic() - started) * 1000
        return StageResult(items=final, explanations=explained.explanations, fused=fused, llm_used=llm_used,
                           fallback_reason=reason, blend_weight=weight, context=ctx, rerank=rerank, calls=calls,
                           timings_ms=timings, explanations_rejected=explained.rejected, notes=notes)

"""One conversational turn end to end — the only place that knows the whole order:

message -> checks -> intent (act + slots) -> plan -> run each tool once -> the answer the act needs
(ranked picks: fuse -> rerank -> explain; an item's facts; a comparison; a catalog fact) -> reply,
then the turn and the session memory are stored in one transaction.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from agent.acts import ActClassifier, load_exemplars
from agent.answers import catalog_answer, comparison_rows, comparison_text
from agent.evidence import reasons
from agent.intent import Intent, IntentParser
from agent.linker import EntityLinker
from agent.llm_stage import LLMStage
from agent.planner import Plan, Planner
from agent.prompts import PromptSet
from agent.reply import REFUSALS, item_answer, recommendations_text
from agent.settings import AgentConfig
from agent.tool_router import model_tool_calls
from agent.toolkit import ToolStep, build_toolkit, run_tool
from catalog.constraints import relax_tags
from catalog.sanitize import text_problem
from catalog.scope import UserScope, scope_for
from catalog.stores import Stores
from fusion.items import Recommendation
from fusion.recommender import Recommender
from fusion.request import RecommendRequest
from indexing.calibration import Calibration
from llm_client.client import LLM, LocalLLM
from storage.events import Event as LiveEvent
from storage.events import EventStore, record
from storage.sessions import SessionState, SessionStore
from tools.history import HistoryEntry, user_history
from tools.social import FriendSignal

log = logging.getLogger("fusionrec.chat")
Event = Callable[[str, Any], None]


CANDIDATE_TOOLS = {"search_catalog", "semantic_search", "similar_items", "popular_items"}


class BadRequest(ValueError):
    """The request cannot be served as sent (empty message, bad k...)."""


class TooLarge(ValueError):
    """The message is over the configured size limit."""


@dataclass
class TurnResult:
    session_id: str
    turn: int
    kind: str  # recommendations | answer | comparison | refusal
    reply: str
    items: list[Recommendation] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # a catalog answer's numbers, a comparison's table
    steps: list[dict[str, Any]] = field(default_factory=list)
    intent: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    llm_used: bool = False
    fallback_reason: str | None = None
    blend_weight: float = 0.0
    context: str = ""
    raw_llm: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    request_id: str = ""
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stored with the turn, compared by the prompt lab)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["items"] = [i.model_dump() for i in self.items]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TurnResult:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["items"] = [Recommendation.model_validate(i) for i in fields.get("items", [])]
        return cls(**fields)


@dataclass
class UserProfile:
    user_id: str
    name: str
    history: list[HistoryEntry]
    friends: list[str]


class ChatAgent:
    def __init__(self, recommender: Recommender, llm: LLM | None, prompts: PromptSet, settings: AgentConfig,
                 sessions: SessionStore, scope_factory: Callable[[Stores, str], UserScope] = scope_for,
                 calibrated_weight: float | None = None, calibration: Calibration | None = None,
                 warm_up: bool | None = None, events: EventStore | None = None):
        """``calibration``: what `fusionrec eval --llm` measured for this model (``calibrated_weight``: its
        weight alone). ``warm_up``: one tiny completion in the background now (None: for a local model, as
        ``llm.warm_up`` says), so the first user does not pay the model's first, slowest call."""
        self.scope_factory = scope_factory  # tests pass a recording factory to audit every read
        self.recommender = recommender
        self.llm = llm
        self.prompts = prompts
        self.settings = settings
        self.sessions = sessions
        self.events = events  # "I bought the second one" is recorded here as a live event (None: session only)
        stores = recommender.stores
        embedder = recommender.vector_store.embedder if recommender.vector_store is not None else None
        classifier = None
        if embedder is not None:
            embedder.model()  # load MiniLM now, not on the first message that is not in the cache
            classifier = ActClassifier(embedder.embed, load_exemplars(prompts.root, prompts.name))
        self.parser = IntentParser(stores, prompts, llm, classifier, EntityLinker(stores))
        stores.items_titled("")  # build the title-word index now, not in the first turn naming a kind of item
        self.planner = Planner(stores, settings.api.default_k, settings.api.max_k)
        self.stage = LLMStage(recommender, llm, prompts, settings, calibrated_weight, calibration)
        self.fusion_only = LLMStage(recommender, None, prompts, settings) if llm is not None else self.stage
        if warm_up is None:
            warm_up = isinstance(llm, LocalLLM) and settings.llm.warm_up
        self.warm_up_state = "not needed" if llm is None else ("off" if not warm_up else "running")
        self.warm_up_thread: threading.Thread | None = None
        if llm is not None and warm_up:
            self.warm_up_thread = threading.Thread(target=self._warm_up, name="llm-warm-up", daemon=True)
            self.warm_up_thread.start()

    def _warm_up(self) -> None:
        """One tiny completion behind the system prompt: loads the weights into memory, allocates the compute
        buffers and leaves the system prompt's tokens in the model's cache for the first real request."""
        assert self.llm is not None
        started = time.monotonic()
        try:
            self.llm.chat([{"role": "system", "content": self.prompts.render("system")},
                           {"role": "user", "content": "ok"}], max_tokens=1, deadline_s=120)
        except Exception as exc:  # a failing model is reported by the turns that use it; warming is best effort
            self.warm_up_state = f"failed: {exc.__class__.__name__}: {exc}"
            log.warning("LLM warm-up failed: %s", exc)
            return
        self.warm_up_state = f"done in {(time.monotonic() - started) * 1000:.0f} ms"

    def llm_steps(self) -> dict[str, dict[str, Any]]:
        """Which LLM steps run for this model and why (plain data, e.g. for a readiness probe)."""
        llm = self.settings.llm
        stage = self.stage
        no_model = {"active": False, "why": "no model"}

        def step(active: bool, why: str) -> dict[str, Any]:
            return {"active": active, "why": why} if self.llm is not None else dict(no_model)

        return {
            "rerank": {"active": stage.rerank_policy.active, "why": stage.rerank_policy.why,
                       "weight": stage.weight, "passes": llm.shuffle_passes},
            "explain": {"active": stage.explain_policy.active, "why": stage.explain_policy.why},
            "intent": step(llm.intent_with_llm, f"llm.intent_with_llm set to {str(llm.intent_with_llm).lower()}"),
            "tool_choice": step(llm.tool_choice == "model" and llm.backend == "hosted",
                                f"llm.tool_choice '{llm.tool_choice}' with the {llm.backend} backend"),
            "warm_up": {"active": self.warm_up_thread is not None, "why": self.warm_up_state},
        }

    def profile(self, user_id: str, limit: int = 6) -> UserProfile:
        """What the UI shows about the acting user: name, recent items, friends (raises UnknownUser)."""
        scope = self.scope_factory(self.recommender.stores, user_id)
        return UserProfile(user_id=scope.user_id, name=str(self.recommender.stores.user_names[scope.user]),
                           history=user_history(scope, limit=limit), friends=scope.friend_names())

    def check_message(self, message: str) -> str:
        if not isinstance(message, str) or not message.strip():
            raise BadRequest("the message is empty")
        problem = text_problem(message)
        if problem:
            raise BadRequest(f"message: {problem}")
        if len(message) > self.settings.api.max_message_chars:
            raise TooLarge(f"the message has {len(message)} characters; the limit is "
                           f"{self.settings.api.max_message_chars}")
        return message.strip()

    def _record_owned(self, user_id: str, session_id: str, turn: int, items: list[str], notes: list[str]) -> None:
        """The user said they have these items: one live event each (the data's positive kind), so no list of
        any session offers them again. Idempotent per turn (a retried turn writes nothing new)."""
        if self.events is None:
            return
        stores = self.recommender.stores
        kind = stores.dataset.positive_kinds[0]
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        try:
            record(self.events, stores, [LiveEvent(user_id, item, kind, 1.0, now, f"chat:{user_id}:{session_id}:{turn}:{item}")
                                         for item in items])
        except Exception as exc:  # the turn still answers (the item stays out of this session's lists)
            log.warning("could not record that %s has %s: %s", user_id, items, exc)
            notes.append("could not save that you have it beyond this conversation")

    def turn(self, user_id: str, message: str, session_id: str | None = None, k: int | None = None,
             idempotency_key: str | None = None, on_event: Event | None = None,
             use_llm: bool = True, request_id: str | None = None) -> TurnResult:
        """Run one turn for an authenticated user (``request_id``: the caller's id for logs, else a new one). Raises UnknownUser, BadRequest, TooLarge
        before any model call; everything after that degrades instead of failing. The turn reads one state of
        the catalog: a live catalog edit is published before or after it (catalog/catalog_lock.py)."""
        with self.recommender.stores.lock.reading():
            return self._turn(user_id, message, session_id, k, idempotency_key, on_event, use_llm, request_id)

    def _turn(self, user_id: str, message: str, session_id: str | None, k: int | None, idempotency_key: str | None,
              on_event: Event | None, use_llm: bool, request_id: str | None) -> TurnResult:
        started = time.monotonic()
        request_id = request_id or uuid.uuid4().hex[:12]
        message = self.check_message(message)
        if k is not None and not 1 <= k <= self.settings.api.max_k:
            raise BadRequest(f"k must be between 1 and {self.settings.api.max_k}")
        scope = self.scope_factory(self.recommender.stores, user_id)  # UnknownUser for unknown ids
        session = self.sessions.open(user_id, session_id)
        replay = self.sessions.replay(session, idempotency_key)
        if replay is not None:
            result = TurnResult.from_dict(replay)
            result.replayed = True
            return result
        emit = on_event or (lambda kind, payload: None)
        deadline = started + self.settings.api.turn_deadline_s
        intent_llm = use_llm and self.llm is not None and self.settings.llm.intent_with_llm
        intent = self.parser.parse(message, use_llm=intent_llm, budget_s=self.settings.api.turn_deadline_s / 3,
                                   has_list=bool(session.state.last_list))
        emit("intent", intent.summary())
        available = self.recommender.stores.offered()
        available[scope.own_known().indices] = False  # what the user already has or knows is never shown
        planner = self.planner if k is None else Planner(self.recommender.stores, k, self.settings.api.max_k)
        plan = planner.plan(intent, session.state, user_id, available=available)
        if plan.owned:
            self._record_owned(user_id, session.id, session.state.turns + 1, plan.owned, plan.notes)
        tools = build_toolkit(scope, self.recommender, self.settings.privacy.friends_detail == "names")
        calls = plan.calls
        if plan.kind == "recommend" and use_llm and self.settings.llm.tool_choice == "model" \
                and self.settings.llm.backend == "hosted":
            # Routing may use at most half of what is left of the turn: the rerank needs the rest.
            chosen = model_tool_calls(self.settings.llm, self.prompts, tools, message, self.settings.api.max_tool_calls,
                                      budget_s=(deadline - time.monotonic()) / 2)
            if chosen is None:
                plan.notes.append("the model did not choose tools; used the built-in plan")
            calls = chosen or plan.calls
        steps: list[ToolStep] = []
        for call in calls[: self.settings.api.max_tool_calls]:
            step = run_tool(tools, call.name, call.args)
            steps.append(step)
            emit("step", step)
        result = TurnResult(session_id=session.id, turn=session.state.turns + 1, kind="refusal", reply="",
                            steps=[self._step_dict(s) for s in steps], intent=intent.summary(), notes=list(plan.notes),
                            request_id=request_id)
        if intent.llm_call is not None:
            result.raw_llm.append(self._call_dict(intent.llm_call))
        assert plan.state is not None
        if plan.kind == "refuse":
            result.reply = REFUSALS[intent.out_of_scope or "action"]
            result.kind = "refusal" if intent.out_of_scope != "small_talk" else "answer"
        elif plan.kind == "answer":
            self._answer(plan, steps, session.state, result)
        elif plan.kind == "catalog":
            self._catalog(intent, result)
        elif plan.kind == "compare":
            self._compare(plan, scope, result)
        else:
            self._recommend(plan, intent, scope, message, deadline, use_llm, result, emit, steps)
        result.timings_ms["total_ms"] = round((time.monotonic() - started) * 1000, 1)
        stored = self.sessions.record_turn(session, message, result.to_dict(), plan.state, idempotency_key)
        log.info("turn done", extra={"request_id": request_id, "kind": result.kind, "items": len(result.items),
                                     "llm_used": result.llm_used, "fallback": result.fallback_reason,
                                     "ms": result.timings_ms["total_ms"]})
        if stored.get("request_id") != request_id:  # a concurrent duplicate won the race: answer as it did
            replayed = TurnResult.from_dict(stored)
            replayed.replayed = True
            return replayed
        return result

    def _answer(self, plan: Plan, steps: list[ToolStep], state: SessionState, result: TurnResult) -> None:
        result.kind = "answer"
        record = next((s.result for s in steps if s.name == "item_attributes" and not s.error), None)
        if record is None or plan.target_item is None:
            result.reply = plan.notes[0] if plan.notes else "I couldn't find that item."
            return
        question = result.intent.get("question") or "details"
        explanation = state.explanations.get(plan.target_item)
        result.reply = item_answer(question, record, explanation, self.recommender.stores.dataset.currency)
        result.items = [Recommendation(**record, rank=1, explanation=explanation or "")]

    def _catalog(self, intent: Intent, result: TurnResult) -> None:
        """A question about the catalog, answered from the stores (counts, categories, brands, prices)."""
        stores = self.recommender.stores
        answer = catalog_answer(stores, intent)
        result.kind, result.reply, result.facts = "answer", answer.reply, answer.facts
        result.items = [Recommendation(**stores.item_record(i), rank=r + 1) for r, i in enumerate(answer.items)]

    def _compare(self, plan: Plan, scope: UserScope, result: TurnResult) -> None:
        """The named items side by side: their attributes and, for this user, their evidence."""
        stores = self.recommender.stores
        items = [stores.item_index[i] for i in plan.items if i in stores.item_index]
        request = RecommendRequest(user_id=scope.user_id, k=len(items), like_items=[], exclude_seen="none",
                                   hints=[str(stores.item_ids[i]) for i in items])
        described = {r.item_id: r for r in self.recommender.describe(request, items, scope)}
        verb = stores.dataset.interaction_verb
        show = self.settings.privacy.friends_detail == "names"
        evidence = [{"friends_count": (described[str(stores.item_ids[i])].evidence.friends_count  # type: ignore[union-attr]
                                       if str(stores.item_ids[i]) in described else 0),
                     "reason": "; ".join(reasons(described[str(stores.item_ids[i])], show, fallback=False,
                                                 request=False, verb=verb)[:2])
                     if str(stores.item_ids[i]) in described else ""} for i in items]
        rows = comparison_rows(stores, items, evidence)
        result.kind, result.facts = "comparison", {"table": rows}
        result.reply = comparison_text(stores, items, rows)
        result.items = [described.get(str(stores.item_ids[i])) or Recommendation(**stores.item_record(i), rank=r + 1)
                        for r, i in enumerate(items)]
        for rank, item in enumerate(result.items, start=1):
            item.rank = rank

    def _recommend(self, plan: Plan, intent: Intent, scope: Any, message: str, deadline: float, use_llm: bool,
                   result: TurnResult, emit: Event, steps: list[ToolStep]) -> None:
        assert plan.request is not None and plan.state is not None
        request = plan.request
        stores = self.recommender.stores
        if request.constraints.tags and not request.constraints.mask(stores).any():
            # No item has all the tags together: give up as few tags as possible, keep them as preferences.
            relaxed = relax_tags(request.constraints, stores)
            request.query = " ".join([request.query or "", *relaxed]).strip() or None
            result.notes.append(f"no item has all of the tags {', '.join([*request.constraints.tags, *relaxed])}; "
                                f"treated {', '.join(relaxed)} as a preference")
        c = request.constraints
        if c.title_words and not c.mask(stores).any():
            # No item of that kind meets the rest ("speakers under $80"): look for related items instead.
            words = list(c.title_words)
            kinds = np.zeros(stores.n_items, bool)
            for word in words:
                kinds |= stores.items_titled(word)
            cats = stores.categories[kinds]
            c.title_words = []
            if not c.category and not c.any_categories and cats.size:
                values, counts = np.unique(cats, return_counts=True)
                c.category = str(values[np.argmax(counts)])
            request.query = " ".join([request.query or "", *words]).strip() or None
            result.notes.append(f"no {' '.join(words)} meets all of that; showing related items")
        for term in intent.unknown_terms:
            result.notes.append(f"no item in the catalog mentions '{term}'")
        result.notes += intent.notes
        # What the search tools found joins the candidate pool (the fusion still decides the order).
        request.hints = list(dict.fromkeys(
            str(r["item_id"]) for step in steps if step.name in CANDIDATE_TOOLS and isinstance(step.result, list)
            for r in step.result if isinstance(r, dict) and "item_id" in r))
        emit("status", "ranking candidates")
        history = next(([HistoryEntry(**h) for h in s.result] for s in steps
                        if s.name == "user_history" and isinstance(s.result, list)), None)
        friends = next(([FriendSignal(**f) for f in s.result] for s in steps
                        if s.name == "friends_purchases" and isinstance(s.result, list)), None)
        stage = (self.stage if use_llm else self.fusion_only).run(request, message, scope=scope, deadline=deadline,
                                                                  history=history, friends=friends)
        result.kind = "recommendations"
        explanations = {e.item_id: e for e in stage.explanations}
        result.items = [r.model_copy(update={
            "explanation": explanations[r.item_id].text if r.item_id in explanations else "",
            "explanation_source": explanations[r.item_id].source if r.item_id in explanations else "evidence",
        }) for r in stage.items]
        result.notes += stage.fused.notes
        result.llm_used, result.fallback_reason, result.blend_weight = (stage.llm_used, stage.fallback_reason,
                                                                         stage.blend_weight)
        if stage.context is not None:
            result.context = self.prompts.render("rerank", **stage.context.variables(request.k))
        result.raw_llm += [self._call_dict(c) for c in stage.calls]
        result.tokens = {"prompt": sum(c["prompt_tokens"] for c in result.raw_llm),
                         "completion": sum(c["completion_tokens"] for c in result.raw_llm)}
        result.timings_ms.update({k: round(v, 1) for k, v in stage.timings_ms.items()})
        if request.source == "friends" and not result.items:
            result.notes.append("none of your friends has anything that matches")
        has_prices = bool((~np.isnan(stores.prices)).any())
        result.reply = recommendations_text(result.items, request.constraints.to_dict(), result.notes,
                                            stores.dataset.currency, stage.fallback_reason, stage.llm_used,
                                            plan.understood, has_prices)
        ids = [r.item_id for r in result.items]
        if ids or not plan.state.last_list:  # an empty answer keeps the earlier list to refer to
            plan.state.last_list = ids
        plan.state.shown += [i for i in ids if i not in plan.state.shown]
        plan.state.explanations = {i.item_id: i.explanation for i in result.items}
        result.notes += stage.notes  # after the reply: what the LLM stage skipped is for callers, not the prose

    @staticmethod
    def _step_dict(step: ToolStep) -> dict[str, Any]:
        return {"name": step.name, "args": step.args, "summary": step.summary(), "ms": round(step.ms, 2),
                "error": step.error,
                "count": len(step.result) if isinstance(step.result, list) else (0 if step.result is None else 1)}

    @staticmethod
    def _call_dict(call: Any) -> dict[str, Any]:
        return {"purpose": call.purpose, "ok": call.ok, "latency_ms": round(call.latency_ms, 1),
                "prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens,
                "error": call.error, "raw": call.raw}


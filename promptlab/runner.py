"""Run cases through the real ChatAgent: one fresh session per case, earlier messages replayed first,
and everything recorded (response, fused candidates, raw LLM output, tokens, latency, checks).

A ``Lab`` builds the services once (index, LLMs) and shares them between variants; each variant run gets
its own temporary SessionStore so nothing leaks from one variant into another.
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from agent.chat import ChatAgent
from agent.llm_stage import LLMStage, StageResult
from agent.prompts import PromptSet, load_prompt_set
from fusion.recommender import Recommender
from indexing.build import load_recommender
from indexing.calibration import load_calibration
from llm_client.client import LLM, LocalModels, make_llm
from promptlab.cases import Case, suite_hash
from promptlab.checks import (
    Check,
    ItemFacts,
    Observation,
    catalog_facts,
    check_case,
    hard_ok,
    leak_snippets,
    target_hit,
)
from promptlab.settings import LabConfig
from promptlab.variants import Variant
from storage.sessions import SessionStore

Progress = Callable[[str], None]


class LabError(RuntimeError):
    """The lab cannot run as configured (model missing, cases for other data...)."""


class StageRecorder:
    """Wraps an LLMStage to keep the last StageResult (the fused candidates the agent does not return).

    ``sink``: another recorder to report to, so the agent's two stages (with and without the LLM) land
    in one place.
    """

    def __init__(self, inner: LLMStage, sink: StageRecorder | None = None):
        self.inner = inner
        self.sink = sink or self
        self.last: StageResult | None = None

    def run(self, *args: Any, **kwargs: Any) -> StageResult:
        result = self.inner.run(*args, **kwargs)
        self.sink.last = result
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class TurnRecord:
    message: str
    result: dict[str, Any] = field(default_factory=dict)  # TurnResult.to_dict()
    fused: list[dict[str, Any]] = field(default_factory=list)  # fused candidates, fusion order
    fused_recorded: bool = False
    llm_order: list[str] = field(default_factory=list)  # the model's merged order before blending
    shown: list[str] = field(default_factory=list)  # candidates in the rerank prompt (after the token budget)
    rejected: list[str] = field(default_factory=list)  # session state after the turn
    error: str | None = None


@dataclass
class CaseRun:
    case_id: str
    labels: list[str]
    turns: list[TurnRecord]
    checks: list[Check]
    hit: bool | None = None
    targets: list[str] = field(default_factory=list)
    known_bug: str = ""

    @property
    def final(self) -> dict[str, Any]:
        return self.turns[-1].result if self.turns else {}

    @property
    def picks(self) -> list[str]:
        return [str(i["item_id"]) for i in self.final.get("items", [])]

    @property
    def ok(self) -> bool:
        return hard_ok(self.checks)

    @property
    def error(self) -> str | None:
        return next((t.error for t in self.turns if t.error), None)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "picks": self.picks}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseRun:
        return cls(case_id=data["case_id"], labels=list(data.get("labels", [])),
                   turns=[TurnRecord(**t) for t in data.get("turns", [])],
                   checks=[Check(**c) for c in data.get("checks", [])], hit=data.get("hit"),
                   targets=list(data.get("targets", [])), known_bug=str(data.get("known_bug", "")))


@dataclass
class VariantRun:
    label: str
    prompt_set: str
    backend: str
    model: str  # LLM.identity(), or "off"
    prompt_hashes: dict[str, str]
    config: dict[str, Any]  # seeds and every setting that changes the outcome
    cases: list[CaseRun]
    started: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "cases"},
                "cases": [c.to_dict() for c in self.cases]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantRun:
        return cls(**{**{k: v for k, v in data.items() if k in cls.__dataclass_fields__},
                      "cases": [CaseRun.from_dict(c) for c in data.get("cases", [])]})


class Lab:
    """Services for prompt-lab runs, built once from the settings and shared between variants."""

    def __init__(self, settings: LabConfig, recommender: Recommender | None = None, llm: LLM | None = None):
        self.settings = settings
        self._recommenders: dict[tuple[Any, ...], Recommender] = {}
        self._llms: dict[tuple[Any, ...], LLM | None] = {}
        self._facts: dict[int, dict[str, ItemFacts]] = {}
        self.models = LocalModels()  # GGUF files loaded for this lab's variants
        if recommender is not None:
            self._recommenders[()] = recommender
        if llm is not None:
            self._llms[self._llm_key(settings)] = llm

    # --- services ------------------------------------------------------------------------------------
    def recommender(self, spec: dict[str, Any] | None = None) -> Recommender:
        """The full index, or (for generated cases) one built without their held-out pairs."""
        key: tuple[Any, ...] = () if not spec else (float(spec["fraction"]), int(spec["seed"]))
        if key not in self._recommenders:
            if not spec:
                self._recommenders[key] = load_recommender(self.settings, build_if_missing=True)
            else:
                self._recommenders[key] = self._holdout(spec)
        return self._recommenders[key]

    def _holdout(self, spec: dict[str, Any]) -> Recommender:
        from loaders import load_dataset
        from promptlab.generate import holdout_recommender

        data, demo_seed = str(spec["data"]), spec.get("demo_seed")
        if data != self.settings.data or (demo_seed is not None and int(demo_seed) != self.settings.demo_seed):
            raise LabError(f"these cases were generated from data '{data}' (demo seed {demo_seed}); "
                           f"run them with --data {data}, not '{self.settings.data}'")
        dataset = load_dataset(self.settings.data, self.settings.demo_seed, self.settings.rating_threshold)
        return holdout_recommender(self.settings, dataset, float(spec["fraction"]), int(spec["seed"]))

    def variant_settings(self, variant: Variant) -> LabConfig:
        llm = self.settings.llm.model_copy(update=variant.llm_overrides(self.settings.llm.backend))
        return self.settings.model_copy(update={"llm": llm, "prompt_set": variant.prompt_set})

    @staticmethod
    def _llm_key(settings: LabConfig) -> tuple[Any, ...]:
        s = settings.llm
        return (s.backend, s.model_path, s.model, s.base_url, s.n_ctx, s.chat_format)

    def llm(self, settings: LabConfig) -> LLM | None:
        key = self._llm_key(settings)
        if key not in self._llms:
            try:
                self._llms[key] = make_llm(settings.llm, self.models)
            except Exception as exc:  # a comparison must not silently fall back to "no model"
                raise LabError(f"cannot load the {settings.llm.backend} LLM: {exc}") from exc
        return self._llms[key]

    def facts(self, recommender: Recommender) -> dict[str, ItemFacts]:
        if id(recommender) not in self._facts:
            self._facts[id(recommender)] = catalog_facts(recommender.stores)
        return self._facts[id(recommender)]

    # --- runs ----------------------------------------------------------------------------------------
    def run(self, cases: list[Case], variant: Variant, progress: Progress | None = None,
            replay_with_llm: bool = True) -> VariantRun:
        return self.compare(cases, [variant], progress, replay_with_llm)[0]

    def compare(self, cases: list[Case], variants: list[Variant], progress: Progress | None = None,
                replay_with_llm: bool = True) -> list[VariantRun]:
        """Every case with every variant, interleaved (case 1 with A, B, ..., then case 2), so a machine
        that gets busier during the run does not bias the latencies of one variant.

        Each variant has its own temporary SessionStore and each case a fresh session in it.
        ``replay_with_llm=False`` replays the earlier messages fusion-only (the agent's ``use_llm=False``):
        only the case's own message is checked, and the rerank prompt never sees earlier turns, so this
        changes the earlier lists only when the blend weight is above 0; it saves one to two LLM calls per
        replayed turn.
        """
        with tempfile.TemporaryDirectory(prefix="prompt-lab-", ignore_cleanup_errors=True) as tmp:
            benches = [_Bench(self, v, SessionStore(Path(tmp) / f"sessions-{k}.sqlite"), replay_with_llm)
                       for k, v in enumerate(variants)]
            for case in cases:
                for bench in benches:
                    run = bench.run(case)
                    if progress:
                        final_ms = run.final.get("timings_ms", {}).get("total_ms", 0.0)
                        soft = [c.name for c in run.checks if not c.hard and not c.passed]
                        verdict = "ok" if run.ok else ("FAIL (known bug)" if case.known_bug else "FAIL")
                        progress(f"[{bench.variant.label}] {case.id}: {verdict}"
                                 + (f" (soft: {', '.join(soft)})" if soft else "") + f"  {final_ms:.0f} ms")
            return [bench.result(cases) for bench in benches]


class _Bench:
    """One variant during a run: its settings, prompt set, LLM, sessions and agents (one per index)."""

    def __init__(self, lab: Lab, variant: Variant, sessions: SessionStore, replay_with_llm: bool):
        self.lab, self.variant, self.sessions, self.replay_with_llm = lab, variant, sessions, replay_with_llm
        self.settings = lab.variant_settings(variant)
        self.prompts = load_prompt_set(self.settings.prompts_dir, variant.prompt_set)
        self.llm = lab.llm(self.settings)
        self.snippets = leak_snippets(list(self.prompts.texts.values()))
        self.agents: dict[int, tuple[ChatAgent, StageRecorder]] = {}
        self.weights: dict[str, float] = {}
        self.runs: list[CaseRun] = []
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.seconds = 0.0

    def run(self, case: Case) -> CaseRun:
        t0 = time.monotonic()
        recommender = self.lab.recommender(case.holdout)
        if id(recommender) not in self.agents:
            self.agents[id(recommender)] = build_agent(recommender, self.llm, self.prompts, self.settings,
                                                       self.sessions)
            self.weights[recommender.stores.dataset.name] = self.agents[id(recommender)][1].inner.weight
        agent, recorder = self.agents[id(recommender)]
        run = run_case(agent, recorder, case, self.lab.facts(recommender), self.snippets, self.replay_with_llm)
        self.runs.append(run)
        self.seconds += time.monotonic() - t0
        return run

    def result(self, cases: list[Case]) -> VariantRun:
        return VariantRun(label=self.variant.label, prompt_set=self.variant.prompt_set,
                          backend=self.settings.llm.backend,
                          model=self.llm.identity() if self.llm is not None else "off",
                          prompt_hashes=self.prompts.hashes(),
                          config=run_config(self.settings, cases, self.weights, self.replay_with_llm),
                          cases=self.runs, started=self.started, seconds=round(self.seconds, 1))


def build_agent(recommender: Recommender, llm: LLM | None, prompts: PromptSet, settings: LabConfig,
                sessions: SessionStore) -> tuple[ChatAgent, StageRecorder]:
    """A real ChatAgent whose stages report their StageResult to the returned recorder."""
    calibration = load_calibration(settings.index_dir, llm.identity()) if llm is not None else None
    agent = ChatAgent(recommender, llm, prompts, settings, sessions, calibration=calibration)
    recorder = StageRecorder(agent.stage)
    same = agent.fusion_only is agent.stage  # one object when the LLM is off
    agent.fusion_only = recorder if same else StageRecorder(agent.fusion_only, sink=recorder)  # type: ignore[assignment]
    agent.stage = recorder  # type: ignore[assignment]
    return agent, recorder


def friend_items(stores: Any, user: str) -> set[str]:
    """Items any friend of ``user`` bought or liked (from the stores, not from the answer)."""
    if user not in stores.user_index:
        return set()
    friends = stores.friends[stores.user_index[user]].indices
    return {str(stores.item_ids[i]) for i in stores.positive[friends].indices}


def run_case(agent: ChatAgent, recorder: StageRecorder, case: Case, facts: dict[str, ItemFacts],
             snippets: list[str], replay_with_llm: bool = True) -> CaseRun:
    """Replay the conversation in a fresh session, then send the case's message and check the answer."""
    session_id: str | None = None
    turns: list[TurnRecord] = []
    messages = [*case.conversation, case.message]
    for n, message in enumerate(messages, start=1):
        record = TurnRecord(message=message)
        turns.append(record)
        recorder.last = None
        try:
            result = agent.turn(case.user, message, session_id=session_id, k=case.k,
                                use_llm=replay_with_llm or n == len(messages))
        except Exception as exc:  # recorded as a failed must-hold check, never hidden
            record.error = f"{exc.__class__.__name__}: {exc}"
            break
        session_id = result.session_id
        record.result = result.to_dict()
        record.rejected = list(agent.sessions.open(case.user, session_id).state.rejected)
        stage = recorder.last
        if stage is not None:
            record.fused_recorded = True
            record.fused = [{"item_id": r.item_id, "title": r.title, "category": r.category, "price": r.price,
                             "score": r.score} for r in stage.fused.items]
            record.llm_order = list(stage.rerank.llm_order) if stage.rerank else []
            record.shown = list(stage.context.candidate_ids) if stage.context else []
    final = turns[-1]
    previous = [str(i["item_id"]) for i in turns[-2].result.get("items", [])] if len(turns) > 1 else []
    observation = Observation(turn=final.result, rejected=final.rejected, error=final.error, previous=previous,
                              fused=[f["item_id"] for f in final.fused] if final.fused_recorded else None,
                              friend_items=friend_items(agent.recommender.stores, case.user)
                              if case.expect.friends_picks else None)
    checks = check_case(case, observation, facts, snippets)
    return CaseRun(case_id=case.id, labels=list(case.labels), turns=turns, checks=checks,
                   hit=target_hit(case, final.result if not final.error else None), targets=list(case.expect.targets),
                   known_bug=case.known_bug)


def run_config(settings: LabConfig, cases: list[Case], weights: dict[str, float],
               replay_with_llm: bool) -> dict[str, Any]:
    llm = settings.llm
    try:
        llama_cpp = version("llama-cpp-python")
    except PackageNotFoundError:
        llama_cpp = "not installed"
    return {"data": settings.data, "demo_seed": settings.demo_seed, "sources_seed": settings.sources.seed,
            "llm_seed": llm.seed, "temperature": llm.temperature, "shuffle_passes": llm.shuffle_passes,
            "rerank_candidates": llm.rerank_candidates, "context_token_budget": llm.context_token_budget,
            "explain_with_llm": llm.explain_with_llm, "intent_with_llm": llm.intent_with_llm,
            "blend_weight": weights, "blend_weight_setting": llm.blend_weight,
            "turn_deadline_s": settings.api.turn_deadline_s, "replay_with_llm": replay_with_llm,
            "suite_hash": suite_hash(cases), "cases": len(cases),
            "python": platform.python_version(), "llama_cpp": llama_cpp}

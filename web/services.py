"""Everything the web layer needs, built once per process from the settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from agent.chat import ChatAgent
from agent.prompts import load_prompt_set
from fusion.recommender import Recommender
from indexing.build import load_recommender
from indexing.calibration import load_calibration
from indexing.live_sync import LiveSync
from llm_client.client import LLM, LocalModels, make_llm
from storage.catalog_edits import CatalogEditStore
from storage.events import EventStore
from storage.sessions import SessionDatabaseError, SessionStore
from web.auth import KeyStore, RateLimiter
from web.settings import WebConfig

log = logging.getLogger("fusionrec.services")


@dataclass
class Services:
    settings: WebConfig
    recommender: Recommender
    llm: LLM | None
    agent: ChatAgent
    keys: KeyStore
    limiter: RateLimiter
    llm_error: str | None = None
    models: LocalModels | None = None  # the local GGUF models this process loaded (closed at shutdown)
    auth_failures: RateLimiter = field(default_factory=lambda: RateLimiter(20))  # per client address
    events: EventStore | None = None  # live behaviour events, in the sessions database
    catalog_edits: CatalogEditStore | None = None  # items added, replaced or withdrawn through the API
    operator_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(6000))  # per operator key
    sync: LiveSync | None = None  # what other processes stored (events, catalog edits), applied before a request

    @classmethod
    def load(cls, settings: WebConfig, build_index_if_missing: bool = True) -> Services:
        database = settings.home / "sessions" / f"{settings.dataset_key}.sqlite"
        sessions = SessionStore(database)  # first: it names a damaged file before anything else reads it
        events, edits = EventStore(database), CatalogEditStore(database)
        edits_through = edits.last_seq()  # read before the replay: an edit stored meanwhile is replayed again (idempotent)
        recommender = load_recommender(settings, build_if_missing=build_index_if_missing, events=events, edits=edits)
        llm, error, models = None, None, LocalModels()
        try:
            llm = make_llm(settings.llm, models)
        except Exception as exc:  # a missing or broken model must not take the recommender down
            error = f"{exc.__class__.__name__}: {exc}"
            log.warning("LLM unavailable, serving fusion-only answers: %s", error)
        prompts = load_prompt_set(settings.prompts_dir, settings.prompt_set)
        calibration = load_calibration(settings.index_dir, llm.identity()) if llm is not None else None
        agent = ChatAgent(recommender, llm, prompts, settings, sessions, calibration=calibration, events=events)
        keys = KeyStore.from_settings(settings.api.keys, settings.api.keys_file, settings.api.operator_keys)
        return cls(settings, recommender, llm, agent, keys, RateLimiter(settings.api.rate_limit_per_minute),
                   error, models, RateLimiter(settings.api.auth_failures_per_minute), events, edits,
                   RateLimiter(settings.api.operator_rate_limit_per_minute),
                   LiveSync(recommender, events, edits, edits_through))

    def readiness_problems(self) -> list[str]:
        """Why this process should not get traffic now (empty when ready)."""
        problems: list[str] = []
        try:
            self.agent.sessions.check()
        except SessionDatabaseError as exc:
            problems.append(f"sessions: {exc}")
        rec = self.recommender
        if rec.vector_store is not None and rec.collection is not None:
            try:
                held = rec.vector_store.count(rec.collection)
            except Exception as exc:  # Chroma unreachable (http mode) or its folder gone
                problems.append(f"vector store: {exc.__class__.__name__}: {exc}")
            else:
                if held != rec.stores.n_offered:  # a withdrawn item's vector is deleted with it
                    problems.append(f"vector store: holds {held} of {rec.stores.n_offered} catalog items")
        if getattr(self.llm, "state", None) == "open":
            problems.append("llm: circuit breaker open after consecutive failures; answers are fusion-only")
        return problems

    def persona_ids(self, limit: int = 40) -> list[str]:
        return [str(u) for u in self.recommender.stores.user_ids[:limit]]

    @property
    def home(self) -> Path:
        return self.settings.home

"""Everything the web layer needs, built once per process from the settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from agent.chat import ChatAgent
from agent.indexer import load_recommender
from agent.llm import LLM, make_llm
from agent.prompts import load_prompt_set
from agent.recommender import Recommender
from agent.session import SessionStore
from agent.settings import Settings
from web.auth import KeyStore, RateLimiter

log = logging.getLogger("fusionrec.services")


@dataclass
class Services:
    settings: Settings
    recommender: Recommender
    llm: LLM | None
    agent: ChatAgent
    keys: KeyStore
    limiter: RateLimiter
    llm_error: str | None = None

    @classmethod
    def load(cls, settings: Settings, build_index_if_missing: bool = True) -> Services:
        recommender = load_recommender(settings, build_if_missing=build_index_if_missing)
        llm, error = None, None
        try:
            llm = make_llm(settings.llm)
        except Exception as exc:  # a missing or broken model must not take the recommender down
            error = f"{exc.__class__.__name__}: {exc}"
            log.warning("LLM unavailable, serving fusion-only answers: %s", error)
        prompts = load_prompt_set(settings.prompts_dir, settings.prompt_set)
        sessions = SessionStore(settings.home / "sessions" / f"{settings.dataset_key}.sqlite")
        agent = ChatAgent(recommender, llm, prompts, settings, sessions)
        keys = KeyStore.from_settings(settings.api.keys, settings.api.keys_file)
        return cls(settings, recommender, llm, agent, keys, RateLimiter(settings.api.rate_limit_per_minute),
                   error)

    def persona_ids(self, limit: int = 40) -> list[str]:
        return [str(u) for u in self.recommender.stores.user_ids[:limit]]

    @property
    def home(self) -> Path:
        return self.settings.home

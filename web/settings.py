"""The web face's settings (API keys, limits, the UI) and what it reads from the top-level settings."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from agent.settings import AgentConfig, TurnSettings
from indexing.settings import IndexConfig


class ApiSettings(BaseModel):
    keys_file: Path | None = None
    keys: dict[str, str] = Field(default_factory=lambda: {"demo": "u0001"})
    rate_limit_per_minute: int = 120
    gradio_queue_size: int = 32


class ApiConfig(ApiSettings, TurnSettings):
    """`api`: the web face's keys and limits, and the limits of one agent turn (the agent's part)."""


class WebConfig(IndexConfig, AgentConfig, Protocol):
    """What the served app reads from the top-level settings."""

    prompts_dir: Path
    prompt_set: str

    @property
    def api(self) -> ApiConfig: ...

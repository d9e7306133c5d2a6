"""The web face's settings (API keys, limits, the UI) and what it reads from the top-level settings."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from agent.settings import AgentConfig, TurnSettings
from indexing.settings import IndexConfig

DEMO_KEYS = {"demo": "u0001"}


class ApiSettings(BaseModel):
    keys_file: Path | None = None
    keys: dict[str, str] = Field(default_factory=lambda: dict(DEMO_KEYS))
    operator_keys: list[str] = Field(
        default_factory=list, description="keys that may write any user's events and the catalog (never a user's key)")
    rate_limit_per_minute: int = 120
    operator_rate_limit_per_minute: int = Field(
        6000, description="requests per minute per operator key (event feeds, catalog edits)")
    auth_failures_per_minute: int = Field(20, description="failed authentications per client address and minute")
    gradio_queue_size: int = 32
    max_body_bytes: int = Field(256 * 1024, description="request bodies are cut off at this many bytes (413)")
    body_read_timeout_s: float = Field(10.0, description="the whole body must arrive within this time (408)")
    max_messages: int = Field(100, description="messages in one OpenAI-compatible request")
    health_cache_s: float = Field(30.0, description="how long /readyz reuses a database or vector-store check")

    @property
    def keys_configured(self) -> bool:
        """True when the operator set keys: anything but the built-in demo key alone."""
        return self.keys_file is not None or self.keys != DEMO_KEYS


class ApiConfig(ApiSettings, TurnSettings):
    """`api`: the web face's keys and limits, and the limits of one agent turn (the agent's part)."""


class ConfigError(ValueError):
    """A setting combination the app refuses to start with (reported in one line)."""


class UISettings(BaseModel):
    """`ui`: the Gradio UI. Without demo personas, the UI asks for a login: user id + an API key bound to it."""

    demo_personas: bool | None = Field(
        None, description="persona picker without login; None = on exactly when no API keys are configured")
    personas: int = Field(40, description="how many demo personas the picker offers (the first user ids)")

    def demo_mode(self, api: ApiSettings) -> bool:
        if self.demo_personas is None:
            return not api.keys_configured
        if self.demo_personas and api.keys_configured:
            raise ConfigError("ui.demo_personas is on while API keys are configured: anyone could act as a "
                              "persona; turn FUSIONREC_UI__DEMO_PERSONAS off or remove the keys")
        return self.demo_personas


class WebConfig(IndexConfig, AgentConfig, Protocol):
    """What the served app reads from the top-level settings."""

    prompts_dir: Path
    prompt_set: str

    @property
    def worker_count(self) -> int: ...

    @property
    def api(self) -> ApiConfig: ...

    @property
    def ui(self) -> UISettings: ...

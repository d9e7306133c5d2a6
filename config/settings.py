"""The one settings object of the app, composed of each package's own part and built at the edge
(CLI flags, environment, a TOML file), then passed down; lower layers only ever see their own parts.

Environment variables use the prefix ``FUSIONREC_`` and ``__`` for nesting, e.g.
``FUSIONREC_LLM__BACKEND=hosted`` or ``FUSIONREC_VECTORSTORE__MODE=http``. A TOML file named by
``FUSIONREC_CONFIG`` (or ``fusionrec.toml`` in the working directory) is read too; explicit
arguments win over env, env wins over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent.settings import AgentLLMSettings
from catalog.settings import PrivacySettings, dataset_key, index_dir
from fusion.settings import FusionSettings
from retrieval.settings import SourceSettings
from vectorstore.settings import VectorStoreSettings
from web.settings import ApiConfig, UISettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FUSIONREC_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    data: str = Field("demo", description="'demo', 'lastfm:<dir>', or a folder in the generic format")
    home: Path = Field(PROJECT_ROOT / ".fusionrec", description="where indexes, the Chroma store and sessions live")
    prompts_dir: Path = PROJECT_ROOT / "prompts"
    prompt_set: str = "default"
    host: str = "127.0.0.1"
    port: int = 7860
    demo_seed: int = 7
    rating_threshold: float | None = Field(None, description="ratings at or above this are positive (targets, "
                                           "friends' picks); default: the loader's rule (MovieLens 4 of 5, "
                                           "generic 80% of the highest rating)")
    log_level: str = "INFO"
    workers: int = Field(1, ge=0, le=64, description="API worker processes of `fusionrec serve` / `app.py`; 0 = one "
                         "per core; above 1 the UI runs in one more process behind them (README, Serving with several "
                         "worker processes)")

    vectorstore: VectorStoreSettings = VectorStoreSettings()
    sources: SourceSettings = SourceSettings()
    fusion: FusionSettings = FusionSettings()
    llm: AgentLLMSettings = AgentLLMSettings()
    privacy: PrivacySettings = PrivacySettings()
    api: ApiConfig = ApiConfig()
    ui: UISettings = UISettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("FUSIONREC_CONFIG", "fusionrec.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some top-level fields changed (used by the CLI for flags)."""
        return self.model_copy(update={k: v for k, v in changes.items() if v is not None})

    @property
    def dataset_key(self) -> str:
        return dataset_key(self)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def index_dir(self) -> Path:
        return index_dir(self)

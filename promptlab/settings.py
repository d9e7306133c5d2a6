"""What the prompt lab reads from the top-level settings: everything an agent and an index need, and a
way to make a variant of them (another prompt set, backend or model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Self

from agent.settings import AgentConfig
from indexing.settings import IndexConfig


class LabConfig(IndexConfig, AgentConfig, Protocol):
    prompts_dir: Path
    prompt_set: str

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Self: ...

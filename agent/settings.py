"""The live turn's settings: limits of one turn (part of `api`) and the LLM stage (part of `llm`).

The top-level settings (config/settings.py) compose these with the other packages' parts; the agent only
sees them through ``AgentConfig``.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, Field

from catalog.settings import PrivacySettings
from llm_client.settings import LLMSettings


class TurnSettings(BaseModel):
    max_message_chars: int = 4000
    max_k: int = 50
    default_k: int = 5
    max_tool_calls: int = 8
    turn_deadline_s: float = 30.0


class LLMStageSettings(BaseModel):
    rerank_candidates: int = 10
    context_token_budget: int = 600
    context_descriptions: bool = Field(False, description="put item descriptions in the rerank context (costs tokens)")
    explain_items: int = 5
    blend_weight: float | None = Field(
        None, description="LLM weight in the final blend; None = use the weight chosen by `fusionrec eval --llm`"
    )
    shuffle_passes: int = Field(2, description="1 = fusion order only; 2 = add a shuffled pass (position-bias mitigation)")
    explain_with_llm: bool | None = Field(
        None, description="phrase explanations with the LLM; None = only where `fusionrec eval --llm` measured that "
                          "the grounding check accepts at least explain_min_acceptance of its phrasings")
    explain_min_acceptance: float = 0.5
    warm_up: bool = Field(True, description="one tiny completion when the agent is built (local model), off the "
                                            "request path, so the first user does not pay the model's first call")
    intent_with_llm: bool = False
    tool_choice: Literal["plan", "model"] = Field(
        "plan", description="'plan': our code picks tools from the intent; 'model': a capable hosted model picks")


class AgentLLMSettings(LLMSettings, LLMStageSettings):
    """The `llm` settings as the agent reads them: how to reach the model and how to use it."""


class AgentConfig(Protocol):
    """What the agent reads from the top-level settings."""

    @property
    def api(self) -> TurnSettings: ...

    @property
    def llm(self) -> AgentLLMSettings: ...

    @property
    def privacy(self) -> PrivacySettings: ...

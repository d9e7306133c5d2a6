"""Tool choice by a capable model (LangChain tool calling), for hosted backends that support it.

The tiny default model cannot route tools reliably, so by default the plan comes from our code
(agent/planner.py). With ``llm.tool_choice = "model"`` and a hosted backend, the model proposes the
calls instead; anything it cannot do (no tool calls, an error, unknown tools) falls back to the plan.
The toolkit has no user argument anywhere, so the model cannot act for another user.
"""

from __future__ import annotations

import logging

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import StructuredTool

from agent.planner import ToolCall
from agent.prompts import PromptSet
from llm_client.settings import LLMSettings

log = logging.getLogger("fusionrec.tools")


def model_tool_calls(settings: LLMSettings, prompts: PromptSet, tools: dict[str, StructuredTool], message: str,
                     max_calls: int, budget_s: float) -> list[ToolCall] | None:
    """The calls the model chose within ``budget_s`` seconds (one attempt), or None when it chose nothing usable."""
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(base_url=settings.base_url, api_key=settings.api_key, model=settings.model,
                       timeout=max(0.1, min(settings.timeout_s, budget_s)), max_retries=0, temperature=0)
    try:
        answer = model.bind_tools(list(tools.values())).invoke([
            SystemMessage(prompts.render("system")), HumanMessage(prompts.render("tools", message=message[:2000]))])
    except Exception as exc:  # any transport or format failure means: use the plan
        log.warning("tool choice by model failed: %s", exc.__class__.__name__)
        return None
    calls = [ToolCall(c["name"], dict(c.get("args") or {}), "chosen by the model")
             for c in getattr(answer, "tool_calls", []) if c.get("name") in tools]
    return calls[:max_calls] or None

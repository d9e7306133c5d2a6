"""ScriptedLLM: a fake model for unit tests of parsing and guards only. It returns the texts it is given,
in order, and records the messages it saw. Never used where a user would meet a model."""

from __future__ import annotations

import time
from typing import Any

from llm_client.client import LLMError, LLMResponse


class ScriptedLLM:
    name = "scripted"

    def __init__(self, outputs: list[str | Exception], delay_s: float = 0.0):
        self.outputs = list(outputs)
        self.delay_s = delay_s
        self.seen: list[list[dict[str, str]]] = []
        self.schemas: list[dict[str, Any] | None] = []

    def identity(self) -> str:
        return "scripted:test"

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None,
             max_tokens: int | None = None, deadline_s: float | None = None) -> LLMResponse:
        self.seen.append(messages)
        self.schemas.append(schema)
        if self.delay_s:
            if deadline_s is not None and self.delay_s > deadline_s:
                time.sleep(deadline_s)
                raise LLMError("timeout", "scripted delay over the deadline")
            time.sleep(self.delay_s)
        out = self.outputs.pop(0) if self.outputs else '{"ranking": []}'
        if isinstance(out, Exception):
            raise out
        return LLMResponse(text=out, prompt_tokens=100, completion_tokens=20, latency_ms=1.0, model="scripted")

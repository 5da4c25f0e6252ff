"""Per-action token-bucket rate limits (answers 429 M_LIMIT_EXCEEDED)."""

from __future__ import annotations

import math
import time

from veche.config import RateLimitsConfig
from veche.errors import limit_exceeded

MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(self, config: RateLimitsConfig, enabled: bool) -> None:
        self._config = config
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def check(self, action: str, key: str, cost: int = 1) -> None:
        """Take `cost` tokens for (action, key) or raise M_LIMIT_EXCEEDED.

        A cost above the burst is allowed from a full bucket and leaves it in debt, so that
        e.g. a room created with many invitees is possible but still paid for in full.
        """
        if not self.enabled:
            return
        tokens, now = self._level(action, key)
        self._require(action, key, tokens, now, min(cost, getattr(self._config, action).burst))
        self._store(action, key, tokens - cost, now)

    def ensure(self, action: str, key: str) -> None:
        """Raise M_LIMIT_EXCEEDED if (action, key) has no token left, without taking one."""
        if self.enabled:
            tokens, now = self._level(action, key)
            self._require(action, key, tokens, now, 1)

    def take(self, action: str, key: str) -> None:
        """Take a token for something that already happened (e.g. a failed login)."""
        if self.enabled:
            tokens, now = self._level(action, key)
            self._store(action, key, tokens - 1, now)

    def _level(self, action: str, key: str) -> tuple[float, float]:
        limit = getattr(self._config, action)
        now = time.monotonic()
        tokens, last = self._buckets.get((action, key), (float(limit.burst), now))
        return min(float(limit.burst), tokens + (now - last) * limit.per_second), now

    def _require(self, action: str, key: str, tokens: float, now: float, need: int) -> None:
        if tokens < need:
            per_second = getattr(self._config, action).per_second
            self._store(action, key, tokens, now)
            raise limit_exceeded(math.ceil((need - tokens) / per_second * 1000))

    def _store(self, action: str, key: str, tokens: float, now: float) -> None:
        self._buckets[(action, key)] = (tokens, now)
        if len(self._buckets) > MAX_BUCKETS:
            self._prune(now)

    def _prune(self, now: float) -> None:
        # A bucket that has refilled is the same as none, and one nearly full matters least:
        # clearing every bucket would let someone who spreads requests over many keys reset
        # every limit, so the emptiest (those being limited) are kept.
        levels: dict[tuple[str, str], float] = {}
        for (action, key), (tokens, last) in self._buckets.items():
            limit = getattr(self._config, action)
            level = (tokens + (now - last) * limit.per_second) / limit.burst
            if level < 1:
                levels[(action, key)] = level
        keep = sorted(levels, key=levels.__getitem__)[:MAX_BUCKETS // 2]
        self._buckets = {k: self._buckets[k] for k in keep}

"""Per-action token-bucket rate limits (answers 429 M_LIMIT_EXCEEDED)."""

from __future__ import annotations

import math
import time

from veche.config import RateLimitsConfig
from veche.errors import limit_exceeded


class RateLimiter:
    def __init__(self, config: RateLimitsConfig, enabled: bool) -> None:
        self._config = config
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def check(self, action: str, key: str) -> None:
        """Take one token for (action, key) or raise M_LIMIT_EXCEEDED."""
        if not self.enabled:
            return
        limit = getattr(self._config, action)
        now = time.monotonic()
        tokens, last = self._buckets.get((action, key), (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - last) * limit.per_second)
        if tokens < 1:
            retry_ms = math.ceil((1 - tokens) / limit.per_second * 1000)
            self._buckets[(action, key)] = (tokens, now)
            raise limit_exceeded(retry_ms)
        self._buckets[(action, key)] = (tokens - 1, now)
        if len(self._buckets) > 100_000:
            self._buckets.clear()

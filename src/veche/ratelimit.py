"""Per-action token-bucket rate limits (answers 429 M_LIMIT_EXCEEDED).

Buckets live in this process's memory, except, in a cluster, those of the SHARED actions:
a load balancer spreads requests without an access token over the processes, so a budget per
process would multiply a password guesser's budget by their number. Those are kept in the
database, where every process takes from the same bucket."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from veche.config import RateLimitsConfig
from veche.errors import limit_exceeded
from veche.storage import ratelimit as store

MAX_BUCKETS = 100_000
SHARED = frozenset({"login", "login_failures", "login_failures_account", "registration"})

# (action, key, burst, per_second, cost, need) -> the bucket's level before taking.
SharedTake = Callable[[str, str, float, float, float, float], Awaitable[float]]
PRUNE_EVERY = 1000


class SharedBuckets:
    """The cluster's buckets, in the database (storage/ratelimit.py)."""

    def __init__(self, db: Any, refill_s: float) -> None:
        self._db = db
        self._refill_ms = int(refill_s * 1000)
        self._takes = 0

    async def take(self, action: str, key: str, burst: float, per_second: float,
                   cost: float, need: float) -> float:
        now_ms = int(time.time() * 1000)  # wall clock: the processes share it, not monotonic
        level: float = await self._db.run(
            store.take_tokens, action, key, burst, per_second, cost, need, now_ms)
        self._takes += 1
        if self._takes % PRUNE_EVERY == 0:  # refilled buckets are the same as none
            await self._db.run(store.forget_full, now_ms - self._refill_ms)
        return level


class RateLimiter:
    def __init__(self, config: RateLimitsConfig, enabled: bool) -> None:
        self._config = config
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self.shared: SharedTake | None = None  # set in a cluster (server.py)

    def shares(self, action: str) -> bool:
        return self.enabled and self.shared is not None and action in SHARED

    async def acheck(self, action: str, key: str, cost: int = 1) -> None:
        """`check`, from the cluster's shared bucket for a SHARED action."""
        if not self.shares(action):
            return self.check(action, key, cost)
        limit = getattr(self._config, action)
        await self._shared(action, key, cost, min(cost, limit.burst))

    async def aensure(self, action: str, key: str) -> None:
        """`ensure`, from the cluster's shared bucket for a SHARED action."""
        if not self.shares(action):
            return self.ensure(action, key)
        await self._shared(action, key, 0, 1)

    async def atake(self, action: str, key: str) -> None:
        """`take`, from the cluster's shared bucket for a SHARED action."""
        if not self.shares(action):
            return self.take(action, key)
        await self._shared(action, key, 1, -math.inf)

    async def _shared(self, action: str, key: str, cost: float, need: float) -> None:
        assert self.shared is not None
        limit = getattr(self._config, action)
        level = await self.shared(action, key, float(limit.burst), limit.per_second, cost, need)
        if level < need:
            raise limit_exceeded(math.ceil((need - level) / limit.per_second * 1000))

    def shared_refill_s(self) -> float:
        """How long the slowest SHARED bucket takes to refill from empty."""
        return max(getattr(self._config, a).burst / getattr(self._config, a).per_second
                   for a in SHARED)

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

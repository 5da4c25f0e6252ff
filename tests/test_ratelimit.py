"""The rate limiter's memory stays bounded without forgetting who is being limited."""

from __future__ import annotations

import pytest

from veche import ratelimit
from veche.config import RateLimitsConfig
from veche.errors import MatrixError


def test_many_keys_do_not_reset_a_limited_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_BUCKETS", 1000)
    limiter = ratelimit.RateLimiter(RateLimitsConfig(), enabled=True)
    for _ in range(5):
        limiter.check("login", "victim-guessed")
    with pytest.raises(MatrixError):
        limiter.check("login", "victim-guessed")
    # An attacker touches many other keys, once each: their buckets stay nearly full.
    for i in range(5000):
        limiter.take("login", f"spray-{i}")
    assert len(limiter._buckets) <= 1000
    with pytest.raises(MatrixError) as e:
        limiter.check("login", "victim-guessed")
    assert e.value.errcode == "M_LIMIT_EXCEEDED"

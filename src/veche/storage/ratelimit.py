"""SQL of the rate-limit buckets a cluster's processes share (veche/ratelimit.py)."""

from __future__ import annotations

from veche.storage.database import Txn


def take_tokens(txn: Txn, action: str, key: str, burst: float, per_second: float,
                cost: float, need: float, now_ms: int) -> float:
    """Refill (action, key)'s bucket to `now_ms` and, when it holds at least `need`
    tokens, take `cost` of them. Returns the level before taking: below `need` means
    nothing was taken. The row is locked until the transaction ends, so two processes
    never both take the last token."""
    txn.execute(
        "INSERT INTO rate_buckets (action, bucket_key, tokens, updated_ms) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (action, bucket_key) DO NOTHING", (action, key, burst, now_ms))
    lock = " FOR UPDATE" if txn.dialect == "postgres" else ""
    row = txn.fetchone("SELECT tokens, updated_ms FROM rate_buckets"
                       " WHERE action = ? AND bucket_key = ?" + lock, (action, key))
    assert row is not None
    level = min(burst, float(row[0]) + max(0, now_ms - int(row[1])) / 1000 * per_second)
    left = level - cost if level >= need else level
    txn.execute("UPDATE rate_buckets SET tokens = ?, updated_ms = ?"
                " WHERE action = ? AND bucket_key = ?", (left, now_ms, action, key))
    return level


def forget_full(txn: Txn, older_than_ms: int) -> int:
    """Drop buckets untouched since `older_than_ms` (refilled by now: the same as none)."""
    return txn.execute("DELETE FROM rate_buckets WHERE updated_ms < ?", (older_than_ms,))

"""Storage for backfill (services/backfill.py): the room's backward extremities, the
positions backfilled events take, outliers that get their place in the graph later, and
redactions waiting for their targets."""

from __future__ import annotations

import time
from typing import Any

from veche.storage.database import Txn

# A redaction from another server waits this long for its target, and at most this many wait.
PENDING_REDACTION_MAX_AGE_MS = 7 * 24 * 3600 * 1000
PENDING_REDACTION_MAX_ROWS = 10_000


def next_backfill_position(txn: Txn) -> int:
    """A stream ordering below every other: backfilled events sort before anything /sync
    served, and no /sync since a position >= 0 ever serves them as new. The row lock
    serialises concurrent backfills on PostgreSQL."""
    return int(txn.fetchval("UPDATE backfill_stream SET pos = pos - 1 RETURNING pos"))


def backward_extremities(
    txn: Txn, room_id: str, low: int, high: int | None, limit: int = 20,
) -> list[tuple[str, int]]:
    """(event ID, depth of the deepest event citing it) of the events that timeline events
    at depths `low`..`high` cite as prev_events but that have no place in the graph here:
    the edges of what this server holds, where history from elsewhere is missing."""
    sql = (
        "SELECT x.prev_event_id, MAX(e.depth) FROM events e"
        " JOIN event_edges x ON x.event_id = e.event_id"
        " LEFT JOIN event_to_state_groups g ON g.event_id = x.prev_event_id"
        " WHERE e.room_id = ? AND e.hidden = 0 AND g.event_id IS NULL AND e.depth >= ?")
    args: list[Any] = [room_id, low]
    if high is not None:
        sql += " AND e.depth <= ?"
        args.append(high)
    sql += " GROUP BY x.prev_event_id ORDER BY MAX(e.depth) DESC LIMIT ?"
    args.append(limit)
    return [(r[0], int(r[1])) for r in txn.fetchall(sql, args)]


def placed_events(txn: Txn, event_ids: list[str]) -> set[str]:
    """Those of the events that have a place in the graph (outliers have none)."""
    out: set[str] = set()
    for i in range(0, len(event_ids), 500):
        clause, args = txn.in_list("event_id", event_ids[i : i + 500])
        out.update(r[0] for r in txn.fetchall(
            f"SELECT event_id FROM event_to_state_groups WHERE {clause}", args))
    return out


def is_outlier(txn: Txn, event_id: str) -> bool:
    return bool(txn.fetchval("SELECT outlier FROM events WHERE event_id = ?", (event_id,)))


def forget_outlier(txn: Txn, event_id: str) -> bool:
    """Remove an outlier so that it can be persisted again with its place in the graph (its
    prev events are here now). A redaction already applied to it waits for it again."""
    row = txn.fetchone("SELECT outlier, redacted_by FROM events WHERE event_id = ?", (event_id,))
    if row is None or not row[0]:
        return False
    if row[1] is not None:
        add_pending_redaction(txn, event_id, row[1])
    txn.execute("DELETE FROM events WHERE event_id = ?", (event_id,))
    txn.execute("DELETE FROM event_auth WHERE event_id = ?", (event_id,))
    txn.execute("DELETE FROM rejections WHERE event_id = ?", (event_id,))
    return True


def add_pending_redaction(txn: Txn, target_id: str, redaction_id: str,
                          now_ms: int | None = None) -> None:
    """The redaction waits for its target; those that waited too long are cleaned up now
    (a pending redaction is rare: this is often enough, and costs an index range)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    txn.execute(
        "INSERT INTO pending_redactions (target_id, redaction_id, received_ts) VALUES (?, ?, ?)"
        " ON CONFLICT (target_id, redaction_id) DO NOTHING", (target_id, redaction_id, now))
    drop_stale_pending_redactions(txn, now)


def drop_stale_pending_redactions(txn: Txn, now_ms: int) -> int:
    """Forget redactions whose target has not come in PENDING_REDACTION_MAX_AGE_MS, and the
    oldest beyond PENDING_REDACTION_MAX_ROWS (a peer citing targets that never exist must
    not grow the table without end). The redaction events stay; only the wait ends, so a
    target that comes after all is shown unredacted. How many were dropped."""
    # Rows from before received_ts existed start their wait now.
    txn.execute("UPDATE pending_redactions SET received_ts = ? WHERE received_ts = 0", (now_ms,))
    dropped = txn.execute("DELETE FROM pending_redactions WHERE received_ts < ?",
                          (now_ms - PENDING_REDACTION_MAX_AGE_MS,))
    newest_kept = txn.fetchval(
        "SELECT received_ts FROM pending_redactions ORDER BY received_ts DESC LIMIT 1 OFFSET ?",
        (PENDING_REDACTION_MAX_ROWS - 1,))
    if newest_kept is not None:
        dropped += txn.execute("DELETE FROM pending_redactions WHERE received_ts < ?",
                               (int(newest_kept),))
    return dropped


def take_pending_redactions(txn: Txn, target_id: str) -> list[tuple[str, int | None]]:
    """(redaction ID, the state group before it) of the redactions waiting for the event;
    they wait no more."""
    rows = txn.fetchall(
        "SELECT p.redaction_id, g.state_group_before FROM pending_redactions p"
        " LEFT JOIN event_to_state_groups g ON g.event_id = p.redaction_id"
        " WHERE p.target_id = ?", (target_id,))
    if rows:
        txn.execute("DELETE FROM pending_redactions WHERE target_id = ?", (target_id,))
    return [(r[0], None if r[1] is None else int(r[1])) for r in rows]


def not_an_extremity(txn: Txn, room_id: str, event_id: str) -> None:
    txn.execute("DELETE FROM event_forward_extremities WHERE room_id = ? AND event_id = ?",
                (room_id, event_id))

"""The outbox of a process among many (migration 0140, src/veche/cluster/outbox.py)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from veche.storage.database import Txn

Row = tuple[str, str, str, str, dict[str, Any]]  # kind, target, event_id, owner, payload


def add(txn: Txn, kind: str, target: str, event_id: str, owner: str, payload: dict[str, Any],
        now: int) -> None:
    txn.execute(
        "INSERT INTO cluster_outbox (kind, target, event_id, owner, payload, created_ts)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (kind, target, event_id, owner, orjson.dumps(payload).decode(), now))


def remove(txn: Txn, kind: str, target: str, event_ids: Collection[str]) -> None:
    if not event_ids:
        return
    where, args = txn.in_list("event_id", list(event_ids))
    txn.execute(f"DELETE FROM cluster_outbox WHERE kind = ? AND target = ? AND {where}",
                (kind, target, *args))


def take_over(txn: Txn, new_owner: str, live: Collection[str], limit: int = 500) -> list[Row]:
    """Rows whose owner is not among `live` (nor `new_owner`), now `new_owner`'s."""
    owners = [new_owner, *live]
    where, args = txn.in_list("owner", owners)
    rows = txn.fetchall(
        "SELECT kind, target, event_id, owner, payload FROM cluster_outbox"
        f" WHERE NOT ({where}) ORDER BY created_ts LIMIT ?", (*args, limit))
    return _claim(txn, new_owner, rows)


def mine(txn: Txn, owner: str) -> list[Row]:
    """What this worker's previous life left unsent (the same name, restarted)."""
    return [(r[0], r[1], r[2], r[3], orjson.loads(r[4])) for r in txn.fetchall(
        "SELECT kind, target, event_id, owner, payload FROM cluster_outbox WHERE owner = ?"
        " ORDER BY created_ts", (owner,))]


def _claim(txn: Txn, new_owner: str, rows: list[tuple[Any, ...]]) -> list[Row]:
    taken: list[Row] = []
    for kind, target, event_id, owner, payload in rows:
        if txn.execute("UPDATE cluster_outbox SET owner = ? WHERE kind = ? AND target = ?"
                       " AND event_id = ? AND owner = ?",
                       (new_owner, kind, target, event_id, owner)):
            taken.append((kind, target, event_id, owner, orjson.loads(payload)))
    return taken

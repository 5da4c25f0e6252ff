"""The outbound federation queue: PDUs and EDUs owed to each destination, and the backoff of
destinations that failed (migration 0045)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from veche.storage.database import Txn


def joined_servers(txn: Txn, room_id: str) -> set[str]:
    """The servers with a joined member in the room, per current membership."""
    return {r[0].split(":", 1)[1] for r in txn.fetchall(
        "SELECT user_id FROM room_memberships WHERE room_id = ? AND membership = 'join'",
        (room_id,),
    ) if ":" in r[0]}


def enqueue_pdu(txn: Txn, destinations: Iterable[str], room_id: str, event_id: str,
                now_ms: int) -> None:
    txn.executemany(
        "INSERT INTO federation_outbox (destination, room_id, event_id, queued_ts)"
        " VALUES (?, ?, ?, ?)", [(d, room_id, event_id, now_ms) for d in sorted(destinations)])


def enqueue_edu(txn: Txn, destination: str, edu: dict[str, Any], now_ms: int) -> None:
    txn.execute(
        "INSERT INTO federation_outbox (destination, edu_json, queued_ts) VALUES (?, ?, ?)",
        (destination, orjson.dumps(edu).decode(), now_ms))


def next_batch(txn: Txn, destination: str, max_pdus: int, max_edus: int
               ) -> tuple[list[tuple[int, str]], list[tuple[int, dict[str, Any]]]]:
    """The oldest ([(id, event_id)], [(id, edu)]) owed to a destination, in queue order."""
    pdus = [(int(r[0]), r[1]) for r in txn.fetchall(
        "SELECT id, event_id FROM federation_outbox WHERE destination = ?"
        " AND event_id IS NOT NULL ORDER BY id LIMIT ?", (destination, max_pdus))]
    edus = [(int(r[0]), orjson.loads(r[1])) for r in txn.fetchall(
        "SELECT id, edu_json FROM federation_outbox WHERE destination = ?"
        " AND edu_json IS NOT NULL ORDER BY id LIMIT ?", (destination, max_edus))]
    return pdus, edus


def delete_sent(txn: Txn, ids: Sequence[int]) -> None:
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("id", list(ids[i : i + 500]))
        txn.execute(f"DELETE FROM federation_outbox WHERE {clause}", args)


def depths(txn: Txn) -> dict[str, int]:
    """Destination -> how many PDUs and EDUs are queued for it (metrics)."""
    return {r[0]: int(r[1]) for r in txn.fetchall(
        "SELECT destination, COUNT(*) FROM federation_outbox GROUP BY destination")}


def pending_pdu_count(txn: Txn, destination: str) -> int:
    return int(txn.fetchval(
        "SELECT COUNT(*) FROM federation_outbox WHERE destination = ? AND event_id IS NOT NULL",
        (destination,)))


def keep_newest_per_room(txn: Txn, destination: str) -> int:
    """Catch-up: drop every PDU owed to the destination but the newest queued of each room
    (the destination fetches the gap itself); returns how many were dropped."""
    return txn.execute(
        "DELETE FROM federation_outbox WHERE destination = ? AND event_id IS NOT NULL"
        " AND id NOT IN (SELECT MAX(id) FROM federation_outbox WHERE destination = ?"
        "  AND event_id IS NOT NULL GROUP BY room_id)", (destination, destination))


def destinations_with_pending(txn: Txn) -> list[str]:
    return [r[0] for r in txn.fetchall("SELECT DISTINCT destination FROM federation_outbox")]


def get_backoff(txn: Txn, destination: str) -> tuple[int, int, int] | None:
    """(failure_ts, retry_last_ts, retry_interval_ms) of a failing destination."""
    row = txn.fetchone(
        "SELECT failure_ts, retry_last_ts, retry_interval_ms FROM federation_destinations"
        " WHERE destination = ?", (destination,))
    return (int(row[0]), int(row[1]), int(row[2])) if row else None


def set_backoff(txn: Txn, destination: str, failure_ts: int, retry_last_ts: int,
                interval_ms: int) -> None:
    txn.execute(
        "INSERT INTO federation_destinations (destination, failure_ts, retry_last_ts,"
        " retry_interval_ms) VALUES (?, ?, ?, ?) ON CONFLICT (destination) DO UPDATE"
        " SET failure_ts = excluded.failure_ts, retry_last_ts = excluded.retry_last_ts,"
        " retry_interval_ms = excluded.retry_interval_ms",
        (destination, failure_ts, retry_last_ts, interval_ms))


def clear_backoff(txn: Txn, destination: str) -> bool:
    return txn.execute("DELETE FROM federation_destinations WHERE destination = ?",
                       (destination,)) > 0


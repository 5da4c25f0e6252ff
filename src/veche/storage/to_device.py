"""To-device message inboxes (SQL for both dialects)."""

from __future__ import annotations

from typing import Any

import orjson

from veche.storage.database import Txn


def device_ids(txn: Txn, user_id: str) -> list[str]:
    return [r[0] for r in txn.fetchall("SELECT device_id FROM devices WHERE user_id = ?", (user_id,))]


def existing_devices(txn: Txn, user_id: str, wanted: list[str]) -> set[str]:
    clause, args = txn.in_list("device_id", wanted)
    return {r[0] for r in txn.fetchall(
        f"SELECT device_id FROM devices WHERE user_id = ? AND {clause}", [user_id, *args])}


def add_txn(txn: Txn, user_id: str, device_id: str, txn_id: str, ts: int) -> bool:
    """Record a transaction ID; False if this device already used it."""
    if txn.fetchval("SELECT 1 FROM to_device_txns WHERE user_id = ? AND device_id = ? AND txn_id = ?",
                    (user_id, device_id, txn_id)):
        return False
    txn.execute("INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts)"
                " VALUES (?, ?, ?, ?)", (user_id, device_id, txn_id, ts))
    return True


def delete_old_txns(txn: Txn, before_ts: int) -> None:
    txn.execute("DELETE FROM to_device_txns WHERE created_ts < ?", (before_ts,))


def add_messages(txn: Txn, stream_id: int, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Rows of (recipient user, recipient device, message)."""
    txn.executemany(
        "INSERT INTO device_inbox (user_id, device_id, stream_id, message_json) VALUES (?, ?, ?, ?)",
        [(u, d, stream_id, orjson.dumps(m).decode()) for u, d, m in rows],
    )


def acknowledge(txn: Txn, user_id: str, device_id: str, since: int) -> None:
    """A sync from token `since`: the device got what the response with that token held."""
    # The record of a cut-short response at this token, else the first of a later one.
    row = txn.fetchone(
        "SELECT token_pos, delivered_upto FROM device_inbox_deliveries WHERE user_id = ?"
        " AND device_id = ? AND token_pos >= ? ORDER BY token_pos LIMIT 1",
        (user_id, device_id, since),
    )
    if row is not None and row[0] != since:
        return  # an old token again: it cannot tell what was delivered, delete nothing
    # Without a record, that response was not cut short: it held everything up to its token.
    delivered = row[1] if row is not None else since
    txn.write("DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
              (user_id, device_id, delivered))
    txn.write("DELETE FROM device_inbox_deliveries WHERE user_id = ? AND device_id = ?"
              " AND token_pos < ?", (user_id, device_id, since))


def pending(
    txn: Txn, user_id: str, device_id: str, upto: int, limit: int
) -> list[tuple[int, dict[str, Any]]]:
    """Up to `limit` undeleted messages with positions up to `upto`, oldest first."""
    return [(int(r[0]), orjson.loads(r[1])) for r in txn.fetchall(
        "SELECT stream_id, message_json FROM device_inbox WHERE user_id = ? AND device_id = ?"
        " AND stream_id <= ? ORDER BY stream_id LIMIT ?", (user_id, device_id, upto, limit),
    )]


def has_messages(txn: Txn, user_id: str, device_id: str) -> bool:
    return txn.fetchval("SELECT 1 FROM device_inbox WHERE user_id = ? AND device_id = ? LIMIT 1",
                        (user_id, device_id)) is not None


def set_position(txn: Txn, user_id: str, stream_id: int) -> None:
    txn.execute(
        "INSERT INTO to_device_positions (user_id, stream_id) VALUES (?, ?) ON CONFLICT (user_id)"
        " DO UPDATE SET stream_id = CASE WHEN excluded.stream_id > to_device_positions.stream_id"
        " THEN excluded.stream_id ELSE to_device_positions.stream_id END", (user_id, stream_id),
    )


def record_partial_delivery(
    txn: Txn, user_id: str, device_id: str, token_pos: int, delivered_upto: int
) -> None:
    # Two responses with one token (concurrent syncs): remember the smaller, so a message
    # may be delivered twice but none is deleted unseen.
    txn.execute(
        "INSERT INTO device_inbox_deliveries (user_id, device_id, token_pos, delivered_upto)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, device_id, token_pos) DO UPDATE"
        " SET delivered_upto = CASE WHEN excluded.delivered_upto < device_inbox_deliveries.delivered_upto"
        " THEN excluded.delivered_upto ELSE device_inbox_deliveries.delivered_upto END",
        (user_id, device_id, token_pos, delivered_upto),
    )

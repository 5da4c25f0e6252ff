"""Dehydrated devices (the table made by migration 0013)."""

from __future__ import annotations

from typing import Any

import orjson

from veche.storage.database import Txn


def get(txn: Txn, user_id: str) -> tuple[str, dict[str, Any]] | None:
    row = txn.fetchone("SELECT device_id, device_data_json FROM dehydrated_devices"
                       " WHERE user_id = ?", (user_id,))
    return (row[0], orjson.loads(row[1])) if row else None


def put(txn: Txn, user_id: str, device_id: str, device_data: dict[str, Any]) -> None:
    txn.execute(
        "INSERT INTO dehydrated_devices (user_id, device_id, device_data_json) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id,"
        " device_data_json = excluded.device_data_json",
        (user_id, device_id, orjson.dumps(device_data).decode()))


def forget(txn: Txn, user_id: str, device_ids: list[str]) -> None:
    clause, args = txn.in_list("device_id", device_ids)
    txn.execute(f"DELETE FROM dehydrated_devices WHERE user_id = ? AND {clause}",
                [user_id, *args])


def take_messages(txn: Txn, user_id: str, device_id: str, after: int, upto: int, limit: int
                  ) -> list[tuple[int, dict[str, Any]]]:
    """Delete the inbox up to `after` (the client has it) and return what follows."""
    txn.execute("DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
                (user_id, device_id, after))
    return [(int(r[0]), orjson.loads(r[1])) for r in txn.fetchall(
        "SELECT stream_id, message_json FROM device_inbox WHERE user_id = ? AND device_id = ?"
        " AND stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
        (user_id, device_id, after, upto, limit))]

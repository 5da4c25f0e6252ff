"""Server-side key backup versions and their session keys (SQL for both dialects)."""

from __future__ import annotations

from typing import Any

import orjson

from veche.storage.database import Txn

# {first_message_index, forwarded_count, is_verified, session_data}
KeyData = dict[str, Any]


def current_version(txn: Txn, user_id: str) -> int | None:
    """The newest backup version that is not deleted."""
    v = txn.fetchval("SELECT MAX(version) FROM room_key_backup_versions"
                     " WHERE user_id = ? AND deleted = 0", (user_id,))
    return None if v is None else int(v)


def get_version(txn: Txn, user_id: str, version: int) -> dict[str, Any] | None:
    """A live (not deleted) backup version with its key count and etag."""
    row = txn.fetchone(
        "SELECT algorithm, auth_data_json, etag FROM room_key_backup_versions"
        " WHERE user_id = ? AND version = ? AND deleted = 0", (user_id, version))
    if row is None:
        return None
    count = txn.fetchval("SELECT COUNT(*) FROM room_key_backups WHERE user_id = ? AND version = ?",
                         (user_id, version))
    return {"algorithm": row[0], "auth_data": orjson.loads(row[1]), "etag": str(row[2]),
            "count": int(count), "version": str(version)}


def create_version(txn: Txn, user_id: str, algorithm: str, auth_data: dict[str, Any]) -> int:
    # Numbers of deleted versions are never reused, hence MAX over every row.
    last = txn.fetchval("SELECT MAX(version) FROM room_key_backup_versions WHERE user_id = ?",
                        (user_id,))
    version = int(last or 0) + 1
    txn.execute(
        "INSERT INTO room_key_backup_versions (user_id, version, algorithm, auth_data_json)"
        " VALUES (?, ?, ?, ?)", (user_id, version, algorithm, orjson.dumps(auth_data).decode()))
    return version


def update_auth_data(txn: Txn, user_id: str, version: int, auth_data: dict[str, Any]) -> None:
    txn.execute("UPDATE room_key_backup_versions SET auth_data_json = ? WHERE user_id = ?"
                " AND version = ?", (orjson.dumps(auth_data).decode(), user_id, version))


def delete_version(txn: Txn, user_id: str, version: int) -> bool:
    """Mark a version deleted and drop its keys; False if there was no such live version."""
    n = txn.execute("UPDATE room_key_backup_versions SET deleted = 1 WHERE user_id = ?"
                    " AND version = ? AND deleted = 0", (user_id, version))
    txn.execute("DELETE FROM room_key_backups WHERE user_id = ? AND version = ?", (user_id, version))
    return n > 0


def delete_all_for_user(txn: Txn, user_id: str) -> None:
    txn.execute("DELETE FROM room_key_backups WHERE user_id = ?", (user_id,))
    txn.execute("UPDATE room_key_backup_versions SET deleted = 1, auth_data_json = '{}'"
                " WHERE user_id = ?", (user_id,))


def bump_etag(txn: Txn, user_id: str, version: int) -> None:
    txn.execute("UPDATE room_key_backup_versions SET etag = etag + 1 WHERE user_id = ?"
                " AND version = ?", (user_id, version))


def _where(room_id: str | None, session_id: str | None) -> tuple[str, list[Any]]:
    sql, args = "", []
    if room_id is not None:
        sql, args = " AND room_id = ?", [room_id]
        if session_id is not None:
            sql, args = sql + " AND session_id = ?", [*args, session_id]
    return sql, args


def get_keys(
    txn: Txn, user_id: str, version: int, room_id: str | None = None, session_id: str | None = None
) -> dict[str, dict[str, KeyData]]:
    """room ID -> session ID -> key data, narrowed to a room and a session when given."""
    extra, args = _where(room_id, session_id)
    rooms: dict[str, dict[str, KeyData]] = {}
    for r in txn.fetchall(
        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,"
        " session_data_json FROM room_key_backups WHERE user_id = ? AND version = ?" + extra,
        [user_id, version, *args],
    ):
        rooms.setdefault(r[0], {})[r[1]] = {
            "first_message_index": int(r[2]), "forwarded_count": int(r[3]),
            "is_verified": bool(r[4]), "session_data": orjson.loads(r[5]),
        }
    return rooms


def put_key(txn: Txn, user_id: str, version: int, room_id: str, session_id: str,
            key: KeyData) -> None:
    # An upsert: two uploads racing for one new session must not fail on the primary key.
    txn.execute(
        "INSERT INTO room_key_backups (user_id, version, room_id, session_id, first_message_index,"
        " forwarded_count, is_verified, session_data_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
        " first_message_index = excluded.first_message_index,"
        " forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified,"
        " session_data_json = excluded.session_data_json",
        (user_id, version, room_id, session_id, key["first_message_index"],
         key["forwarded_count"], int(key["is_verified"]), orjson.dumps(key["session_data"]).decode()),
    )


def delete_keys(txn: Txn, user_id: str, version: int, room_id: str | None,
                session_id: str | None) -> int:
    extra, args = _where(room_id, session_id)
    return txn.execute("DELETE FROM room_key_backups WHERE user_id = ? AND version = ?" + extra,
                       [user_id, version, *args])

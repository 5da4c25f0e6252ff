"""Device lists across servers (SQL for both dialects): what was announced of local users'
devices (m.device_list_update), remote users' device lists as kept here, and the
m.direct_to_device message IDs already delivered."""

from __future__ import annotations

from typing import Any

import orjson

from veche.storage.database import Txn


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# --- announced (local users) ---------------------------------------------------------------------

def outbound_stream_id(txn: Txn, user_id: str) -> int:
    """The stream_id of the newest m.device_list_update sent for the user (0: none yet)."""
    value = txn.fetchval("SELECT stream_id FROM device_list_outbound WHERE user_id = ?", (user_id,))
    return int(value) if value is not None else 0


def set_outbound_stream_id(txn: Txn, user_id: str, stream_id: int) -> None:
    txn.execute(
        "INSERT INTO device_list_outbound (user_id, stream_id) VALUES (?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
        (user_id, stream_id))


def announced(txn: Txn, user_id: str) -> dict[str, Any]:
    """device_id ('' for the cross-signing keys) -> content as last announced."""
    return {r[0]: orjson.loads(r[1]) for r in txn.fetchall(
        "SELECT device_id, content_json FROM device_list_outbound_devices WHERE user_id = ?",
        (user_id,))}


def set_announced(txn: Txn, user_id: str, device_id: str, content: Any | None) -> None:
    if content is None:
        txn.execute("DELETE FROM device_list_outbound_devices WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id))
        return
    txn.execute(
        "INSERT INTO device_list_outbound_devices (user_id, device_id, content_json)"
        " VALUES (?, ?, ?) ON CONFLICT (user_id, device_id) DO UPDATE"
        " SET content_json = excluded.content_json", (user_id, device_id, _dumps(content)))


def servers_sharing_rooms(txn: Txn, user_id: str) -> set[str]:
    """Servers with a user joined to a room the user is joined to."""
    return {r[0].split(":", 1)[1] for r in txn.fetchall(
        "SELECT DISTINCT b.user_id FROM room_memberships a JOIN room_memberships b"
        " ON b.room_id = a.room_id WHERE a.user_id = ? AND a.membership = 'join'"
        " AND b.membership = 'join'", (user_id,)) if ":" in r[0]}


def shares_room_with_server(txn: Txn, user_id: str, server_name: str) -> bool:
    """Whether the (remote) user is joined to a room a user of `server_name` is joined to."""
    for (other,) in txn.fetchall(
        "SELECT DISTINCT b.user_id FROM room_memberships a JOIN room_memberships b"
        " ON b.room_id = a.room_id WHERE a.user_id = ? AND a.membership = 'join'"
        " AND b.membership = 'join'", (user_id,)):
        if other.partition(":")[2] == server_name:
            return True
    return False


# --- kept (remote users) -----------------------------------------------------------------------

def remote_list(txn: Txn, user_id: str) -> tuple[str | None, bool] | None:
    """(stream_id, stale) of a remote user's device list kept here, or None. A list is
    stale too if the user joined a room since it was last known current."""
    row = txn.fetchone("SELECT stream_id, stale, synced_pos FROM remote_device_lists"
                       " WHERE user_id = ?", (user_id,))
    if row is None:
        return None
    rejoined = txn.fetchval(
        "SELECT 1 FROM room_memberships WHERE user_id = ? AND membership = 'join'"
        " AND stream_ordering > ?", (user_id, row[2]))
    return row[0], bool(row[1]) or bool(rejoined)


def set_remote_list(txn: Txn, user_id: str, stream_id: str | None, synced_pos: int) -> None:
    """The list is current as of our stream position `synced_pos`."""
    txn.execute(
        "INSERT INTO remote_device_lists (user_id, stream_id, stale, synced_pos) VALUES (?, ?, 0, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, stale = 0,"
        " synced_pos = excluded.synced_pos", (user_id, stream_id, synced_pos))


def mark_stale(txn: Txn, user_id: str) -> None:
    txn.execute("UPDATE remote_device_lists SET stale = 1 WHERE user_id = ?", (user_id,))


def replace_remote_devices(txn: Txn, user_id: str,
                           devices: list[tuple[str, dict[str, Any] | None, str | None]]) -> None:
    txn.execute("DELETE FROM remote_device_keys WHERE user_id = ?", (user_id,))
    txn.executemany(
        "INSERT INTO remote_device_keys (user_id, device_id, key_json, display_name)"
        " VALUES (?, ?, ?, ?)",
        [(user_id, d, _dumps(k) if k is not None else None, n) for d, k, n in devices])


def set_remote_device(txn: Txn, user_id: str, device_id: str, keys: dict[str, Any] | None,
                      display_name: str | None) -> None:
    txn.execute(
        "INSERT INTO remote_device_keys (user_id, device_id, key_json, display_name)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO UPDATE"
        " SET key_json = excluded.key_json, display_name = excluded.display_name",
        (user_id, device_id, _dumps(keys) if keys is not None else None, display_name))


def delete_remote_device(txn: Txn, user_id: str, device_id: str) -> None:
    txn.execute("DELETE FROM remote_device_keys WHERE user_id = ? AND device_id = ?",
                (user_id, device_id))


def remote_devices(txn: Txn, user_id: str) -> dict[str, tuple[dict[str, Any], str | None]]:
    """device_id -> (keys, display name) of a remote user's devices that have keys."""
    return {r[0]: (orjson.loads(r[1]), r[2]) for r in txn.fetchall(
        "SELECT device_id, key_json, display_name FROM remote_device_keys WHERE user_id = ?"
        " AND key_json IS NOT NULL", (user_id,))}


# --- m.direct_to_device ------------------------------------------------------------------------

def first_delivery(txn: Txn, origin: str, message_id: str, now_ms: int) -> bool:
    """Record a message_id from `origin`; False if it was delivered before."""
    if txn.fetchval("SELECT 1 FROM federation_to_device_seen WHERE origin = ? AND message_id = ?",
                    (origin, message_id)):
        return False
    txn.execute("INSERT INTO federation_to_device_seen (origin, message_id, received_ts)"
                " VALUES (?, ?, ?)", (origin, message_id, now_ms))
    return True


def forget_deliveries(txn: Txn, before_ms: int) -> None:
    txn.execute("DELETE FROM federation_to_device_seen WHERE received_ts < ?", (before_ms,))

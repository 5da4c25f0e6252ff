"""End-to-end encryption keys and device list changes (SQL for both dialects)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from veche.storage.database import Txn


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _chunks(values: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


# --- device keys ---------------------------------------------------------------------------

def get_device_keys(txn: Txn, user_id: str, device_id: str) -> dict[str, Any] | None:
    raw = txn.fetchval("SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
                       (user_id, device_id))
    return orjson.loads(raw) if raw is not None else None


def set_device_keys(txn: Txn, user_id: str, device_id: str, keys: dict[str, Any]) -> None:
    txn.execute(
        "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
        (user_id, device_id, _dumps(keys)),
    )


def query_device_keys(
    txn: Txn, user_id: str, device_ids: list[str] | None
) -> list[tuple[str, dict[str, Any], str | None]]:
    """(device_id, keys, display name) of the user's devices that uploaded keys."""
    sql = ("SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k"
           " JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id"
           " WHERE k.user_id = ?")
    if device_ids is None:
        rows = txn.fetchall(sql, (user_id,))
    else:
        rows = []
        for chunk in _chunks(device_ids):
            clause, args = txn.in_list("k.device_id", chunk)
            rows += txn.fetchall(f"{sql} AND {clause}", [user_id, *args])
    return [(r[0], orjson.loads(r[1]), r[2]) for r in rows]


# --- one-time and fallback keys ----------------------------------------------------------------

def get_one_time_keys(
    txn: Txn, user_id: str, device_id: str, ids: list[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(algorithm, key_id) -> stored JSON, for those of `ids` that exist."""
    out: dict[tuple[str, str], str] = {}
    for chunk in _chunks(sorted({k for _, k in ids})):
        clause, args = txn.in_list("key_id", chunk)
        for alg, key_id, raw in txn.fetchall(
            "SELECT algorithm, key_id, key_json FROM e2e_one_time_keys WHERE user_id = ?"
            f" AND device_id = ? AND {clause}", [user_id, device_id, *args],
        ):
            out[(alg, key_id)] = raw
    return out


def add_one_time_keys(
    txn: Txn, user_id: str, device_id: str, keys: Iterable[tuple[str, str, str]]
) -> None:
    txn.executemany(
        "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)"
        " VALUES (?, ?, ?, ?, ?)",
        [(user_id, device_id, alg, key_id, raw) for alg, key_id, raw in keys],
    )


def count_one_time_keys(txn: Txn, user_id: str, device_id: str) -> dict[str, int]:
    return count_one_time_keys_later(txn, user_id, device_id)()


def count_one_time_keys_later(
    txn: Txn, user_id: str, device_id: str
) -> Callable[[], dict[str, int]]:
    """`count_one_time_keys` as a held read (`Txn.fetchall_later`)."""
    rows = txn.fetchall_later(
        "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
        " GROUP BY algorithm", (user_id, device_id),
    )
    return lambda: {r[0]: int(r[1]) for r in rows()}


def set_fallback_key(
    txn: Txn, user_id: str, device_id: str, algorithm: str, key_id: str, raw: str
) -> None:
    """Store a device's fallback key; re-uploading the same key keeps its `used` mark."""
    current = txn.fetchone(
        "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?"
        " AND algorithm = ?", (user_id, device_id, algorithm),
    )
    if current is not None and current[0] == key_id and orjson.loads(current[1]) == orjson.loads(raw):
        return
    txn.execute(
        "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
        " VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE"
        " SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0",
        (user_id, device_id, algorithm, key_id, raw),
    )


def unused_fallback_types(txn: Txn, user_id: str, device_id: str) -> list[str]:
    return unused_fallback_types_later(txn, user_id, device_id)()


def unused_fallback_types_later(
    txn: Txn, user_id: str, device_id: str
) -> Callable[[], list[str]]:
    """`unused_fallback_types` as a held read (`Txn.fetchall_later`)."""
    rows = txn.fetchall_later(
        "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = 0",
        (user_id, device_id),
    )
    return lambda: sorted(r[0] for r in rows())


def claim_one_time_key(
    txn: Txn, user_id: str, device_id: str, algorithm: str
) -> tuple[str, str] | None:
    """Take (and delete) one of the device's one-time keys: (key_id, key_json) or None.

    On PostgreSQL concurrent claimers skip rows another transaction has locked, so no key
    is handed out twice and none waits; SQLite transactions are serialised (BEGIN IMMEDIATE).
    """
    if txn.dialect == "postgres":
        row = txn.fetchone(
            "DELETE FROM e2e_one_time_keys WHERE (user_id, device_id, algorithm, key_id) IN"
            " (SELECT user_id, device_id, algorithm, key_id FROM e2e_one_time_keys"
            "  WHERE user_id = ? AND device_id = ? AND algorithm = ? ORDER BY key_id LIMIT 1"
            "  FOR UPDATE SKIP LOCKED) RETURNING key_id, key_json",
            (user_id, device_id, algorithm),
        )
        return (row[0], row[1]) if row else None
    row = txn.fetchone(
        "SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
        " AND algorithm = ? ORDER BY key_id LIMIT 1", (user_id, device_id, algorithm),
    )
    if row is None:
        return None
    txn.execute("DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                " AND algorithm = ? AND key_id = ?", (user_id, device_id, algorithm, row[0]))
    return (row[0], row[1])


def claim_fallback_key(
    txn: Txn, user_id: str, device_id: str, algorithm: str
) -> tuple[str, str] | None:
    row = txn.fetchone(
        "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?"
        " AND algorithm = ?", (user_id, device_id, algorithm),
    )
    if row is None:
        return None
    txn.execute("UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ?"
                " AND algorithm = ?", (user_id, device_id, algorithm))
    return (row[0], row[1])


# --- cross-signing keys and signatures ---------------------------------------------------------

def get_cross_signing_keys(txn: Txn, user_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """user -> key_type -> key JSON."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for chunk in _chunks(user_ids):
        clause, args = txn.in_list("user_id", chunk)
        for uid, key_type, raw in txn.fetchall(
            f"SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys WHERE {clause}", args,
        ):
            out.setdefault(uid, {})[key_type] = orjson.loads(raw)
    return out


def set_cross_signing_key(
    txn: Txn, user_id: str, key_type: str, public_key: str, key: dict[str, Any]
) -> None:
    txn.execute(
        "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, key_type) DO UPDATE"
        " SET public_key = excluded.public_key, key_json = excluded.key_json",
        (user_id, key_type, public_key, _dumps(key)),
    )


def add_signatures(txn: Txn, rows: list[tuple[str, str, str, str, str]]) -> None:
    """Rows of (user_id, key_id, signer_user_id, signer_key_id, signature)."""
    for row in rows:
        txn.execute(
            "INSERT INTO e2e_signatures (user_id, key_id, signer_user_id, signer_key_id, signature)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, key_id, signer_user_id, signer_key_id)"
            " DO UPDATE SET signature = excluded.signature", row,
        )


def get_signatures(
    txn: Txn, user_ids: list[str]
) -> dict[tuple[str, str], list[tuple[str, str, str]]]:
    """(user, key_id) -> [(signer_user_id, signer_key_id, signature)]."""
    out: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for chunk in _chunks(user_ids):
        clause, args = txn.in_list("user_id", chunk)
        for uid, key_id, signer, signer_key, sig in txn.fetchall(
            "SELECT user_id, key_id, signer_user_id, signer_key_id, signature FROM e2e_signatures"
            f" WHERE {clause}", args,
        ):
            out.setdefault((uid, key_id), []).append((signer, signer_key, sig))
    return out


# --- devices going away ------------------------------------------------------------------------

def delete_device_data(txn: Txn, user_id: str, device_ids: list[str]) -> None:
    """Everything a deleted device leaves behind: keys, signatures on them, its inbox."""
    for chunk in _chunks(device_ids):
        clause, args = txn.in_list("device_id", chunk)
        for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys",
                      "device_inbox", "device_inbox_deliveries", "to_device_txns"):
            txn.execute(f"DELETE FROM {table} WHERE user_id = ? AND {clause}", [user_id, *args])
        key_clause, key_args = txn.in_list("key_id", chunk)
        txn.execute(f"DELETE FROM e2e_signatures WHERE user_id = ? AND {key_clause}",
                    [user_id, *key_args])


# --- device list changes -------------------------------------------------------------------------

def mark_changed(txn: Txn, user_ids: Iterable[str], stream_id: int) -> None:
    for user_id in sorted(set(user_ids)):
        txn.execute(
            "INSERT INTO device_list_changes (user_id, stream_id) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
            (user_id, stream_id),
        )


def changed_users(txn: Txn, since: int, upto: int) -> list[str]:
    return changed_users_later(txn, since, upto)()


def changed_users_later(txn: Txn, since: int, upto: int) -> Callable[[], list[str]]:
    """`changed_users` as a held read (`Txn.fetchall_later`)."""
    if upto <= since:
        return list
    rows = txn.fetchall_later(
        "SELECT user_id FROM device_list_changes WHERE stream_id > ? AND stream_id <= ?",
        (since, upto),
    )
    return lambda: [r[0] for r in rows()]


def joined_rooms(txn: Txn, user_id: str) -> list[str]:
    return joined_rooms_later(txn, user_id)()


def joined_rooms_later(txn: Txn, user_id: str) -> Callable[[], list[str]]:
    """`joined_rooms` as a held read (`Txn.fetchall_later`)."""
    rows = txn.fetchall_later(
        "SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = 'join'",
        (user_id,),
    )
    return lambda: [r[0] for r in rows()]


def own_membership_changes(txn: Txn, user_id: str, since: int, upto: int) -> list[tuple[str, str]]:
    """(room_id, membership) of the user's rooms whose membership changed in the window."""
    return own_membership_changes_later(txn, user_id, since, upto)()


def own_membership_changes_later(
    txn: Txn, user_id: str, since: int, upto: int
) -> Callable[[], list[tuple[str, str]]]:
    """`own_membership_changes` as a held read (`Txn.fetchall_later`)."""
    rows = txn.fetchall_later(
        "SELECT room_id, membership FROM room_memberships WHERE user_id = ?"
        " AND stream_ordering > ? AND stream_ordering <= ?", (user_id, since, upto),
    )
    return lambda: [(r[0], r[1]) for r in rows()]


def members_changed_in_rooms(txn: Txn, room_ids: list[str], since: int, upto: int) -> set[str]:
    """Users whose m.room.member event in one of the rooms falls in the window."""
    out: set[str] = set()
    for chunk in _chunks(room_ids):
        clause, args = txn.in_list("room_id", chunk)
        out.update(r[0] for r in txn.fetchall(
            # `type || ''` keeps the planner off events_room_state, which would read every
            # member event of the room (5,000 in a big one) instead of the window's events.
            "SELECT DISTINCT state_key FROM events WHERE type || '' = 'm.room.member'"
            f" AND stream_ordering > ? AND stream_ordering <= ? AND {clause}",
            [since, upto, *args],
        ))
    return out


def joined_members(txn: Txn, room_ids: list[str]) -> set[str]:
    out: set[str] = set()
    for chunk in _chunks(room_ids):
        clause, args = txn.in_list("room_id", chunk)
        out.update(r[0] for r in txn.fetchall(
            f"SELECT DISTINCT user_id FROM room_memberships WHERE membership = 'join' AND {clause}",
            args,
        ))
    return out


def sharing_with(txn: Txn, user_id: str, candidates: list[str]) -> set[str]:
    """Those of `candidates` who are joined to a room `user_id` is joined to."""
    out: set[str] = set()
    for chunk in _chunks(candidates):
        clause, args = txn.in_list("b.user_id", chunk)
        out.update(r[0] for r in txn.fetchall(
            "SELECT DISTINCT b.user_id FROM room_memberships a JOIN room_memberships b"
            " ON b.room_id = a.room_id WHERE a.user_id = ? AND a.membership = 'join'"
            f" AND b.membership = 'join' AND {clause}", [user_id, *args],
        ))
    return out


def device_list_delta(txn: Txn, user_id: str, since: int, upto: int) -> tuple[set[str], set[str]]:
    """(changed, left) device lists for `user_id` between two stream positions.

    Changed: users sharing a room now whose keys changed, or who started sharing a room
    (a join by them or by `user_id`); left: users who shared a room and no longer do.
    """
    if upto <= since:
        return set(), set()
    # Three independent reads, held: one round trip on PostgreSQL.
    changed_later = changed_users_later(txn, since, upto)
    own_later = own_membership_changes_later(txn, user_id, since, upto)
    rooms_later = joined_rooms_later(txn, user_id)
    keys_changed = set(changed_later())
    candidates = set(keys_changed)
    own = own_later()
    rooms = rooms_later()
    maybe_left: set[str] = set()
    newly_joined = [r for r, m in own if m == "join"]
    candidates |= joined_members(txn, newly_joined)
    maybe_left |= joined_members(txn, [r for r, m in own if m != "join"])
    members = members_changed_in_rooms(txn, rooms, since, upto)
    candidates |= members
    maybe_left |= members
    if not candidates and not maybe_left:
        return set(), set()
    sharing = sharing_with(txn, user_id, sorted((candidates | maybe_left) - {user_id}))
    changed = {u for u in candidates if u in sharing}
    if user_id in keys_changed:
        changed.add(user_id)
    left = {u for u in maybe_left if u not in sharing and u != user_id}
    return changed, left

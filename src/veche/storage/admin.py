"""SQL of the admin API (services/admin_*.py), for both dialects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from veche.storage import search
from veche.storage.database import Txn

# --- users ---------------------------------------------------------------------------------

_USER_COLUMNS = ("u.user_id, u.is_admin, u.deactivated, u.displayname, u.avatar_url,"
                 " u.created_ts, u.locked, u.suspended,"
                 " (SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id)")

# order_by of the users list -> column (Synapse's names); ties go by user ID.
USER_ORDER = {
    "name": "u.user_id", "admin": "u.is_admin", "deactivated": "u.deactivated",
    "displayname": "u.displayname", "avatar_url": "u.avatar_url", "creation_ts": "u.created_ts",
    "last_seen_ts": "9", "locked": "u.locked",
}


def _user(row: Sequence[Any]) -> dict[str, Any]:
    return {
        "name": row[0], "admin": bool(row[1]), "deactivated": bool(row[2]),
        "displayname": row[3], "avatar_url": row[4], "creation_ts": int(row[5]),
        "locked": bool(row[6]), "suspended": bool(row[7]),
        "last_seen_ts": None if row[8] is None else int(row[8]),
    }


def _like(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_users(
    txn: Txn, server_name: str, start: int, limit: int, *, name: str | None,
    user_id: str | None, deactivated: bool, admins: bool | None, order_by: str,
    backwards: bool, locked: bool = True,
) -> tuple[list[dict[str, Any]], int]:
    """One page of local users, and how many match in all."""
    where = ["u.user_id LIKE ? ESCAPE '\\'"]
    args: list[Any] = ["%:" + server_name.replace("\\", "\\\\").replace("%", "\\%")
                       .replace("_", "\\_")]
    if name:
        # Synapse: the localpart or the display name contains it.
        where.append("(LOWER(SUBSTR(u.user_id, 2)) LIKE ? ESCAPE '\\'"
                     " OR LOWER(COALESCE(u.displayname, '')) LIKE ? ESCAPE '\\')")
        args += [_like(name), _like(name)]
    elif user_id:
        where.append("LOWER(u.user_id) LIKE ? ESCAPE '\\'")
        args.append(_like(user_id))
    if not deactivated:
        where.append("u.deactivated = 0")
    if not locked:
        where.append("u.locked = 0")
    if admins is not None:
        where.append("u.is_admin = ?")
        args.append(int(admins))
    clause = " AND ".join(where)
    total = int(txn.fetchval(f"SELECT COUNT(*) FROM users u WHERE {clause}", args))
    direction = "DESC" if backwards else "ASC"
    column = USER_ORDER[order_by]
    rows = txn.fetchall(
        f"SELECT {_USER_COLUMNS} FROM users u WHERE {clause}"
        f" ORDER BY {column} {direction}, u.user_id {direction} LIMIT ? OFFSET ?",
        [*args, limit, start])
    return [_user(r) for r in rows], total


def get_user(txn: Txn, user_id: str) -> dict[str, Any] | None:
    row = txn.fetchone(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.user_id = ?", (user_id,))
    return None if row is None else _user(row)


def set_admin(txn: Txn, user_id: str, admin: bool) -> None:
    txn.execute("UPDATE users SET is_admin = ? WHERE user_id = ?", (int(admin), user_id))


def reactivate(txn: Txn, user_id: str) -> None:
    txn.execute("UPDATE users SET deactivated = 0 WHERE user_id = ?", (user_id,))


def set_profile(txn: Txn, user_id: str, field: str, value: str | None) -> None:
    column = {"displayname": "displayname", "avatar_url": "avatar_url"}[field]
    txn.execute(f"UPDATE users SET {column} = ? WHERE user_id = ?", (value, user_id))


# --- rooms ---------------------------------------------------------------------------------

def all_room_ids(txn: Txn) -> list[str]:
    return [r[0] for r in txn.fetchall("SELECT room_id FROM rooms ORDER BY room_id")]


def room_facts(txn: Txn, rooms: list[str], server_name: str) -> dict[str, dict[str, Any]]:
    """What the room summaries lack: creator, publication, state size, local members."""
    if not rooms:
        return {}
    clause, args = txn.in_list("room_id", rooms)
    out: dict[str, dict[str, Any]] = {
        r: {"creator": c, "public": bool(p), "state_events": 0, "joined_local_members": 0}
        for r, c, p in txn.fetchall(
            f"SELECT room_id, creator, is_public FROM rooms WHERE {clause}", args)}
    for room_id, n in txn.fetchall(
            f"SELECT room_id, COUNT(*) FROM current_state WHERE {clause} GROUP BY room_id", args):
        if room_id in out:
            out[room_id]["state_events"] = int(n)
    suffix = "%:" + server_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    for room_id, n in txn.fetchall(
            "SELECT room_id, COUNT(*) FROM room_memberships WHERE membership = 'join'"
            f" AND user_id LIKE ? ESCAPE '\\' AND {clause} GROUP BY room_id", [suffix, *args]):
        if room_id in out:
            out[room_id]["joined_local_members"] = int(n)
    return out


def state_contents(txn: Txn, rooms: list[str], types: Sequence[str]
                   ) -> dict[str, dict[str, dict[str, Any]]]:
    """room -> state type -> content, of the rooms' current state events with an empty
    state key among `types`."""
    if not rooms:
        return {}
    clause, args = txn.in_list("c.room_id", rooms)
    tclause, targs = txn.in_list("c.type", list(types))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for room_id, typ, js in txn.fetchall(
            "SELECT c.room_id, c.type, e.json FROM current_state c JOIN events e"
            f" ON e.event_id = c.event_id WHERE c.state_key = '' AND {clause} AND {tclause}",
            [*args, *targs]):
        content = orjson.loads(js).get("content")
        out.setdefault(room_id, {})[typ] = content if isinstance(content, dict) else {}
    return out


def local_members_forgotten(txn: Txn, room_id: str, server_name: str) -> bool:
    """Whether every local user who was in the room has forgotten it."""
    suffix = "%:" + server_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    row = txn.fetchone(
        "SELECT COUNT(*), COALESCE(SUM(forgotten), 0) FROM room_memberships"
        " WHERE room_id = ? AND user_id LIKE ? ESCAPE '\\'", (room_id, suffix))
    return bool(row and row[0] and row[0] == row[1])


def local_members(txn: Txn, room_id: str, server_name: str) -> list[tuple[str, str]]:
    """(user, membership) of local users joined, invited or knocking."""
    suffix = "%:" + server_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return [(r[0], r[1]) for r in txn.fetchall(
        "SELECT user_id, membership FROM room_memberships WHERE room_id = ?"
        " AND membership IN ('join', 'invite', 'knock') AND user_id LIKE ? ESCAPE '\\'"
        " ORDER BY user_id", (room_id, suffix))]


def room_blocks(txn: Txn) -> dict[str, tuple[str, bool, bool]]:
    """room -> (admin who blocked or deleted it, blocked, purged)."""
    return {r[0]: (r[1], bool(r[2]), bool(r[3])) for r in txn.fetchall(
        "SELECT room_id, user_id, blocked, purged FROM blocked_rooms")}


def set_block(txn: Txn, room_id: str, user_id: str, blocked: bool, purged: bool) -> None:
    if not blocked and not purged:
        txn.execute("DELETE FROM blocked_rooms WHERE room_id = ?", (room_id,))
    elif txn.execute("UPDATE blocked_rooms SET user_id = ?, blocked = ?, purged = ?"
                     " WHERE room_id = ?", (user_id, int(blocked), int(purged), room_id)) == 0:
        txn.execute("INSERT INTO blocked_rooms (room_id, user_id, blocked, purged)"
                    " VALUES (?, ?, ?, ?)", (room_id, user_id, int(blocked), int(purged)))


def remove_room_listing(txn: Txn, room_id: str) -> list[str]:
    """Delete the room's aliases and unpublish it; the aliases that were deleted."""
    aliases = [r[0] for r in txn.fetchall(
        "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY room_alias", (room_id,))]
    txn.execute("DELETE FROM room_aliases WHERE room_id = ?", (room_id,))
    txn.execute("UPDATE rooms SET is_public = 0 WHERE room_id = ?", (room_id,))
    return aliases


# --- media ---------------------------------------------------------------------------------

MEDIA_ORDER = {
    "media_id": "media_id", "upload_name": "upload_name", "created_ts": "created_ts",
    "last_access_ts": "last_access_ts", "media_length": "size", "media_type": "content_type",
    "quarantined_by": "quarantined_by", "safe_from_quarantine": "media_id",
}


def user_media(txn: Txn, user_id: str, start: int, limit: int, order_by: str, backwards: bool
               ) -> tuple[list[dict[str, Any]], int]:
    where = "user_id = ? AND sha256 IS NOT NULL"
    total = int(txn.fetchval(f"SELECT COUNT(*) FROM media WHERE {where}", (user_id,)))
    direction = "DESC" if backwards else "ASC"
    rows = txn.fetchall(
        "SELECT media_id, created_ts, last_access_ts, size, content_type, upload_name,"
        f" quarantined, quarantined_by FROM media WHERE {where}"
        f" ORDER BY {MEDIA_ORDER[order_by]} {direction}, media_id ASC LIMIT ? OFFSET ?",
        (user_id, limit, start))
    return [{
        "media_id": r[0], "created_ts": int(r[1]),
        "last_access_ts": None if r[2] is None else int(r[2]),
        "media_length": int(r[3] or 0), "media_type": r[4], "upload_name": r[5],
        "quarantined_by": (r[7] or "") if r[6] else None, "safe_from_quarantine": False,
    } for r in rows], total


def quarantine(txn: Txn, media_id: str, by: str | None) -> bool:
    return txn.execute(
        "UPDATE media SET quarantined = ?, quarantined_by = ? WHERE media_id = ?",
        (int(by is not None), by, media_id)) == 1


def local_media_before(txn: Txn, before_ts: int, size_gt: int) -> list[str]:
    """Uploaded local media last accessed before `before_ts` and larger than `size_gt`."""
    return [r[0] for r in txn.fetchall(
        "SELECT media_id FROM media WHERE sha256 IS NOT NULL AND size > ?"
        " AND COALESCE(last_access_ts, created_ts) < ? ORDER BY media_id",
        (size_gt, before_ts))]


# --- registration tokens ---------------------------------------------------------------------

def _token(row: Sequence[Any]) -> dict[str, Any]:
    return {"token": row[0], "uses_allowed": row[1], "pending": int(row[2]),
            "completed": int(row[3]), "expiry_time": row[4]}


def list_tokens(txn: Txn) -> list[dict[str, Any]]:
    return [_token(r) for r in txn.fetchall(
        "SELECT token, uses_allowed, pending, completed, expiry_time FROM registration_tokens"
        " ORDER BY token")]


def get_token(txn: Txn, token: str) -> dict[str, Any] | None:
    row = txn.fetchone(
        "SELECT token, uses_allowed, pending, completed, expiry_time FROM registration_tokens"
        " WHERE token = ?", (token,))
    return None if row is None else _token(row)


def update_token(txn: Txn, token: str, fields: dict[str, int | None]) -> bool:
    sets = ", ".join(f"{k} = ?" for k in fields if k in ("uses_allowed", "expiry_time"))
    if not sets:
        return get_token(txn, token) is not None
    return txn.execute(f"UPDATE registration_tokens SET {sets} WHERE token = ?",
                       [*fields.values(), token]) == 1


def delete_token(txn: Txn, token: str) -> bool:
    return txn.execute("DELETE FROM registration_tokens WHERE token = ?", (token,)) == 1


# --- event reports ---------------------------------------------------------------------------

_REPORT = ("SELECT r.report_id, r.received_ts, r.room_id, r.event_id, r.reporter, r.reason,"
           " e.sender, e.json FROM content_reports r LEFT JOIN events e"
           " ON e.event_id = r.event_id")


def _report(row: Sequence[Any]) -> dict[str, Any]:
    report_id = row[0]
    return {
        "id": int(report_id) if str(report_id).isdigit() else report_id,
        "received_ts": int(row[1]), "room_id": row[2], "event_id": row[3], "user_id": row[4],
        "reason": row[5], "score": None, "sender": row[6],
        "event_json": orjson.loads(row[7]) if row[7] else None,
    }


def list_event_reports(
    txn: Txn, start: int, limit: int, backwards: bool, user_id: str | None,
    room_id: str | None, sender: str | None,
) -> tuple[list[dict[str, Any]], int]:
    where = ["r.event_id IS NOT NULL"]
    args: list[Any] = []
    for column, value in (("r.reporter", user_id), ("r.room_id", room_id), ("e.sender", sender)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    clause = " AND ".join(where)
    total = int(txn.fetchval(
        "SELECT COUNT(*) FROM content_reports r LEFT JOIN events e ON e.event_id = r.event_id"
        f" WHERE {clause}", args))
    direction = "DESC" if backwards else "ASC"
    rows = txn.fetchall(f"{_REPORT} WHERE {clause} ORDER BY r.received_ts {direction},"
                        f" r.report_id {direction} LIMIT ? OFFSET ?", [*args, limit, start])
    return [_report(r) for r in rows], total


def get_event_report(txn: Txn, report_id: str) -> dict[str, Any] | None:
    row = txn.fetchone(f"{_REPORT} WHERE r.report_id = ? AND r.event_id IS NOT NULL",
                       (report_id,))
    return None if row is None else _report(row)


def delete_event_report(txn: Txn, report_id: str) -> bool:
    return txn.execute("DELETE FROM content_reports WHERE report_id = ? AND event_id IS NOT NULL",
                       (report_id,)) == 1


# --- server notices --------------------------------------------------------------------------

def notice_room(txn: Txn, user_id: str) -> str | None:
    value = txn.fetchval("SELECT room_id FROM server_notice_rooms WHERE user_id = ?", (user_id,))
    return None if value is None else str(value)


def set_notice_room(txn: Txn, user_id: str, room_id: str) -> None:
    if txn.execute("UPDATE server_notice_rooms SET room_id = ? WHERE user_id = ?",
                   (room_id, user_id)) == 0:
        txn.execute("INSERT INTO server_notice_rooms (user_id, room_id) VALUES (?, ?)",
                    (user_id, room_id))


# --- purging a deleted room's content ---------------------------------------------------------

def unredacted_events(txn: Txn, room_id: str, after: int, limit: int
                      ) -> list[tuple[int, str]]:
    """(stream ordering, JSON) of the room's events not yet redacted, in stream order."""
    return [(int(r[0]), r[1]) for r in txn.fetchall(
        "SELECT stream_ordering, json FROM events WHERE room_id = ? AND stream_ordering > ?"
        " AND redacted_by IS NULL ORDER BY stream_ordering LIMIT ?", (room_id, after, limit))]


def erase_events(txn: Txn, room_id: str, pruned: list[tuple[int, str]], marker: str) -> None:
    """Store the redacted JSON of events (by stream ordering), and drop the room's search
    index entries."""
    txn.executemany("UPDATE events SET json = ?, redacted_by = ? WHERE stream_ordering = ?",
                    [(js, marker, so) for so, js in pruned])
    search.unindex_room(txn, room_id)

"""Presence rows (one per user, stream-positioned) and content reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from veche.storage.database import Txn

PresenceRow = tuple[str, str, str | None, int, int]  # user, presence, status_msg, last_active, stream


def get_presence(txn: Txn, user_id: str) -> PresenceRow | None:
    row = txn.fetchone(
        "SELECT user_id, presence, status_msg, last_active_ts, stream_id FROM presence"
        " WHERE user_id = ?", (user_id,),
    )
    return row  # type: ignore[return-value,unused-ignore]


def set_presence(
    txn: Txn, user_id: str, presence: str, status_msg: str | None, last_active_ts: int, stream_id: int
) -> None:
    txn.execute(
        "INSERT INTO presence (user_id, presence, status_msg, last_active_ts, stream_id)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET presence = excluded.presence,"
        " status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,"
        " stream_id = excluded.stream_id",
        (user_id, presence, status_msg, last_active_ts, stream_id),
    )


def presence_since_for_user(txn: Txn, user_id: str, since: int, upto: int) -> list[PresenceRow]:
    """Presence changes in (since, upto] of the user and everyone sharing a joined room."""
    return presence_since_for_user_later(txn, user_id, since, upto)()


def presence_since_for_user_later(
    txn: Txn, user_id: str, since: int, upto: int
) -> Callable[[], list[PresenceRow]]:
    """`presence_since_for_user` as a held read (`Txn.fetchall_later`)."""
    return txn.fetchall_later(  # type: ignore[return-value,unused-ignore]
        "SELECT p.user_id, p.presence, p.status_msg, p.last_active_ts, p.stream_id FROM presence p"
        # From the changes in the window (usually few), each checked for a shared room: not
        # a list of everyone sharing a room with the user, built on every /sync.
        " WHERE p.stream_id > ? AND p.stream_id <= ? AND (p.user_id = ? OR EXISTS ("
        "  SELECT 1 FROM room_memberships o JOIN room_memberships me"
        "  ON me.user_id = ? AND me.room_id = o.room_id"
        "  WHERE o.user_id = p.user_id AND o.membership = 'join' AND me.membership = 'join'))",
        (since, upto, user_id, user_id),
    )


def present_users(txn: Txn) -> list[PresenceRow]:
    """Users whose stored presence is not offline."""
    return txn.fetchall(  # type: ignore[return-value,unused-ignore]
        "SELECT user_id, presence, status_msg, last_active_ts, stream_id FROM presence"
        " WHERE presence <> 'offline'"
    )


def present_members(txn: Txn, room_id: str) -> list[PresenceRow]:
    """The presence of the room's joined members whose presence is not offline."""
    return txn.fetchall(  # type: ignore[return-value,unused-ignore]
        "SELECT p.user_id, p.presence, p.status_msg, p.last_active_ts, p.stream_id FROM presence p"
        " JOIN room_memberships m ON m.user_id = p.user_id WHERE m.room_id = ?"
        " AND m.membership = 'join' AND p.presence <> 'offline'", (room_id,))


def shares_room(txn: Txn, user_a: str, user_b: str) -> bool:
    return txn.fetchone(
        "SELECT 1 FROM room_memberships a JOIN room_memberships b ON a.room_id = b.room_id"
        " WHERE a.user_id = ? AND b.user_id = ? AND a.membership = 'join' AND b.membership = 'join'"
        " LIMIT 1", (user_a, user_b),
    ) is not None


def joined_room_ids(txn: Txn, user_id: str) -> list[str]:
    return [r[0] for r in txn.fetchall(
        "SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = 'join'", (user_id,)
    )]


def add_report(
    txn: Txn, report_id: str, reporter: str, room_id: str | None, event_id: str | None,
    target_user_id: str | None, reason: str | None, ts: int,
) -> None:
    txn.execute(
        "INSERT INTO content_reports (report_id, reporter, room_id, event_id, target_user_id,"
        " reason, received_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (report_id, reporter, room_id, event_id, target_user_id, reason, ts),
    )


def search_users(txn: Txn, searcher: str, term: str, limit: int) -> list[tuple[Any, ...]]:
    """Users sharing a joined room with the searcher or joined to a public room whose user ID
    or display name contains `term` (case-insensitive): (user_id, displayname, avatar_url)."""
    like = "%" + term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return txn.fetchall(
        "SELECT u.user_id, u.displayname, u.avatar_url FROM users u"
        " WHERE u.deactivated = 0 AND (LOWER(u.user_id) LIKE ? ESCAPE '\\'"
        "   OR LOWER(COALESCE(u.displayname, '')) LIKE ? ESCAPE '\\')"
        " AND (u.user_id = ? OR u.user_id IN ("
        "   SELECT o.user_id FROM room_memberships o JOIN room_memberships me"
        "   ON me.room_id = o.room_id WHERE me.user_id = ? AND me.membership = 'join'"
        "   AND o.membership = 'join')"
        "  OR u.user_id IN (SELECT m.user_id FROM room_memberships m JOIN rooms r"
        "   ON r.room_id = m.room_id WHERE m.membership = 'join' AND (r.is_public = 1 OR"
        "   EXISTS (SELECT 1 FROM current_state cs JOIN events je ON je.event_id = cs.event_id"
        "    WHERE cs.room_id = r.room_id AND cs.type = 'm.room.join_rules' AND cs.state_key = ''"
        "    AND je.json LIKE '%\"join_rule\":\"public\"%'))))"
        " ORDER BY CASE WHEN u.user_id = ? THEN 1 ELSE 0 END, u.user_id LIMIT ?",
        (like, like, searcher, searcher, searcher, limit),
    )


def search_remote_members(txn: Txn, searcher: str, term: str, limit: int) -> list[tuple[str, str]]:
    """Users without an account here (other servers' users) joined to a room the searcher is
    joined to, whose user ID or member event contains `term` (case-insensitive; the caller
    checks the display name itself): (user_id, member event JSON), at most `limit` users."""
    like = "%" + term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = txn.fetchall(
        "SELECT o.user_id, e.json FROM room_memberships me JOIN room_memberships o"
        " ON o.room_id = me.room_id JOIN events e ON e.event_id = o.event_id"
        " WHERE me.user_id = ? AND me.membership = 'join' AND o.membership = 'join'"
        " AND NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = o.user_id)"
        " AND (LOWER(o.user_id) LIKE ? ESCAPE '\\' OR LOWER(e.json) LIKE ? ESCAPE '\\')"
        " ORDER BY o.user_id, o.stream_ordering DESC LIMIT ?",
        (searcher, like, like, limit * 5),
    )
    out: dict[str, str] = {}
    for user_id, js in rows:
        out.setdefault(user_id, js)  # the newest member event of each user
    return list(out.items())

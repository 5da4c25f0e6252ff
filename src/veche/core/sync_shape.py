"""The lean shape of a /sync answer: empty sections left out where the spec allows.

A live /sync answer for one new message used to carry ~200 bytes of empty lists and objects
(`presence`, `to_device`, `device_lists`, empty `invite`/`leave`/`knock`, a room's empty
`state`, `ephemeral`, `account_data`, `summary`); on a slow link every answer pays for them.
Every one of these is optional in the spec (client-server API, GET /sync), and clients treat
a missing section as an empty one (matrix-js-sdk, matrix-nio, Ruma-based clients; Conduit
has always left them out).

Kept whatever their content:
- `next_batch` (required);
- `device_one_time_keys_count` and `device_unused_fallback_key_types` when present: Synapse
  always sends them, and clients read a missing count as "no keys left" (element-web#14022)
  and a missing fallback list as "this server does not report fallback keys";
- a joined room's `unread_notifications` and `unread_thread_notifications`: zeros are news
  (a read receipt reset the count), and js-sdk resets thread counts by what is listed;
- a timeline that is `limited` even without events (the client must drop what it has).
"""

from __future__ import annotations

from typing import Any

_EVENT_SECTIONS = ("state", "account_data", "ephemeral")


def _events_empty(section: Any) -> bool:
    return isinstance(section, dict) and set(section) <= {"events"} and not section.get("events")


def _lean_room(room: dict[str, Any]) -> None:
    for key in _EVENT_SECTIONS:
        if key in room and _events_empty(room[key]):
            del room[key]
    timeline = room.get("timeline")
    if isinstance(timeline, dict) and not timeline.get("events") and not timeline.get("limited"):
        del room["timeline"]
    if room.get("summary") == {}:
        del room["summary"]


def lean_sync(result: dict[str, Any]) -> dict[str, Any]:
    """Leave out the empty sections of a /sync answer (in place; returned for convenience)."""
    rooms = result.get("rooms")
    if isinstance(rooms, dict):
        for kind in ("join", "leave"):
            for room in (rooms.get(kind) or {}).values():
                _lean_room(room)
        for kind in ("join", "invite", "leave", "knock"):
            if kind in rooms and not rooms[kind]:
                del rooms[kind]
        if not rooms:
            del result["rooms"]
    for key in ("account_data", "presence", "to_device"):
        if key in result and _events_empty(result[key]):
            del result[key]
    lists = result.get("device_lists")
    if isinstance(lists, dict):
        for key in ("changed", "left"):
            if key in lists and not lists[key]:
                del lists[key]
        if not lists:
            del result["device_lists"]
    return result

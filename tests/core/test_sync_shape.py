"""The lean /sync shape: what is left out, and what is kept although empty."""

from __future__ import annotations

from veche.core.sync_shape import lean_sync


def _room(**over: object) -> dict[str, object]:
    room: dict[str, object] = {
        "timeline": {"events": [], "limited": False, "prev_batch": "s1"},
        "state": {"events": []}, "account_data": {"events": []}, "ephemeral": {"events": []},
        "unread_notifications": {"notification_count": 0, "highlight_count": 0}, "summary": {},
    }
    room.update(over)
    return room


def test_an_empty_answer_keeps_only_what_clients_need() -> None:
    body = {
        "next_batch": "s9", "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
        "account_data": {"events": []}, "presence": {"events": []}, "to_device": {"events": []},
        "device_lists": {"changed": [], "left": []}, "device_one_time_keys_count": {},
        "device_unused_fallback_key_types": [],
    }
    assert lean_sync(body) == {"next_batch": "s9", "device_one_time_keys_count": {},
                               "device_unused_fallback_key_types": []}


def test_a_room_with_one_message() -> None:
    message = {"type": "m.room.message", "content": {"body": "hi"}}
    body = {"next_batch": "s9", "rooms": {"join": {"!r": _room(
        timeline={"events": [message], "limited": False, "prev_batch": "s1"})}, "leave": {}},
        "device_lists": {"changed": ["@a:x"], "left": []}}
    assert lean_sync(body) == {"next_batch": "s9", "rooms": {"join": {"!r": {
        "timeline": {"events": [message], "limited": False, "prev_batch": "s1"},
        "unread_notifications": {"notification_count": 0, "highlight_count": 0}}}},
        "device_lists": {"changed": ["@a:x"]}}


def test_news_without_events_is_kept() -> None:
    # A read receipt reset the count: zeros are the news. A limited timeline without events
    # still tells the client to drop what it has.
    limited = {"events": [], "limited": True, "prev_batch": "s5"}
    body = {"next_batch": "s9", "rooms": {"join": {"!a": _room(), "!b": _room(timeline=limited)},
                                          "leave": {"!c": {"timeline": {"events": []},
                                                           "state": {"events": []}}}}}
    out = lean_sync(body)["rooms"]
    assert out["join"]["!a"] == {"unread_notifications": {"notification_count": 0, "highlight_count": 0}}
    assert out["join"]["!b"]["timeline"] == limited
    assert out["leave"] == {"!c": {}}
    summary = {"m.joined_member_count": 2}
    assert lean_sync({"rooms": {"join": {"!a": _room(summary=summary)}}})["rooms"]["join"]["!a"]["summary"] == summary

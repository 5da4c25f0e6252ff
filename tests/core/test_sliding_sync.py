"""The pure rules of simplified sliding sync: request parsing, required_state matching,
list order, windows and filters."""

from __future__ import annotations

from typing import Any

import pytest

from veche.core.sliding_sync import (
    ListFilters,
    RequiredState,
    RoomFacts,
    RoomScope,
    SlidingSyncRequest,
    in_ranges,
    list_ops,
    sort_rooms,
)

ME = "@me:x"


@pytest.mark.parametrize(("pairs", "entry", "lazy", "wanted"), [
    ([["m.room.name", ""]], ("m.room.name", ""), set(), True),
    ([["m.room.name", ""]], ("m.room.topic", ""), set(), False),
    ([["*", "*"]], ("m.room.topic", ""), set(), True),
    ([["m.room.member", "*"]], ("m.room.member", "@a:x"), set(), True),
    ([["m.room.member", "*"]], ("m.room.name", ""), set(), False),
    ([["*", ""]], ("m.room.topic", ""), set(), True),
    ([["*", ""]], ("m.room.member", "@a:x"), set(), False),
    ([["m.room.member", "$ME"]], ("m.room.member", ME), set(), True),
    ([["m.room.member", "$ME"]], ("m.room.member", "@a:x"), set(), False),
    ([["m.room.member", "$LAZY"]], ("m.room.member", "@a:x"), {"@a:x"}, True),
    ([["m.room.member", "$LAZY"]], ("m.room.member", "@b:x"), {"@a:x"}, False),
    # $LAZY means members only.
    ([["m.room.name", "$LAZY"]], ("m.room.name", "@a:x"), {"@a:x"}, False),
    ([], ("m.room.create", ""), set(), False),
])
def test_required_state_matches(pairs: list[list[str]], entry: tuple[str, str], lazy: set[str],
                                wanted: bool) -> None:
    assert RequiredState.from_json(pairs).matches(entry[0], entry[1], ME, lazy) is wanted


def test_required_state_added_since() -> None:
    before = RequiredState.from_json([["m.room.name", ""]])
    after = RequiredState.from_json([["m.room.name", ""], ["m.room.topic", ""]])
    assert after.added_since(before).to_json() == [["m.room.topic", ""]]
    assert not before.added_since(after).pairs  # shrinking adds nothing to send


@pytest.mark.parametrize("body", [
    [], {"lists": []}, {"lists": {"a": {"ranges": [[5, 1]]}}},
    {"lists": {"a": {"ranges": [[0, -1]]}}}, {"lists": {"a": {"ranges": [[0]]}}},
    {"lists": {"a": {"ranges": [[0, True]]}}},
    {"lists": {"a": {"timeline_limit": -1}}}, {"lists": {"a": {"timeline_limit": "5"}}},
    {"lists": {"a": {"required_state": [["m.room.name"]]}}},
    {"lists": {"a": {"required_state": [["m.room.name", 1]]}}},
    {"lists": {"a": {"filters": {"is_dm": "yes"}}}},
    {"lists": {"a": {"filters": {"room_types": "m.space"}}}},
    {"room_subscriptions": {"!r:x": []}}, {"conn_id": 5}, {"conn_id": "a\x00"},
    {"extensions": {"to_device": {"enabled": True, "since": 5}}},
    {"extensions": {"receipts": {"enabled": True, "lists": "all"}}},
])
def test_malformed_requests_are_refused(body: Any) -> None:
    with pytest.raises(ValueError):
        SlidingSyncRequest.from_json(body)


def test_an_element_x_request_parses() -> None:
    req = SlidingSyncRequest.from_json({
        "conn_id": "room-list",
        "lists": {"all_rooms": {
            "ranges": [[0, 19]], "timeline_limit": 1,
            "required_state": [["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                               ["m.room.member", "$ME"]],
            "filters": {"not_room_types": ["m.space"]},
        }},
        "room_subscriptions": {"!r:x": {"timeline_limit": 20, "required_state": [["*", "*"]]}},
        "extensions": {"to_device": {"enabled": True, "since": "12"}, "e2ee": {"enabled": True},
                       "account_data": {"enabled": True}, "receipts": {"enabled": False},
                       "unknown": {"enabled": True}},
    })
    lst = req.lists["all_rooms"]
    assert lst.ranges == ((0, 19),) and lst.room.timeline_limit == 1
    assert lst.room.required_state.lazy_members
    assert lst.filters.not_room_types == ("m.space",)
    assert req.room_subscriptions["!r:x"].timeline_limit == 20
    ext = req.extensions
    assert ext.to_device and ext.to_device_since == "12" and ext.e2ee
    assert ext.account_data == RoomScope() and ext.receipts is None


def _room(room_id: str, stamp: int, **kw: Any) -> RoomFacts:
    return RoomFacts(room_id, kw.pop("membership", "join"), stamp, **kw)


def test_rooms_sort_newest_first_and_windows_cut_the_order() -> None:
    rooms = [_room("!a", 5), _room("!b", 9), _room("!c", 7), _room("!d", 1)]
    ordered = [r.room_id for r in sort_rooms(rooms)]
    assert ordered == ["!b", "!c", "!a", "!d"]
    assert list_ops(ordered, ((0, 1), (3, 10))) == [
        {"op": "SYNC", "range": [0, 1], "room_ids": ["!b", "!c"]},
        {"op": "SYNC", "range": [3, 10], "room_ids": ["!d"]},
    ]
    assert list_ops(ordered, ((5, 9),)) == []
    assert in_ranges(ordered, ((0, 1), (1, 2))) == ["!b", "!c", "!a"]


@pytest.mark.parametrize(("filters", "room", "kept"), [
    ({"is_dm": True}, _room("!r", 1, is_dm=True), True),
    ({"is_dm": True}, _room("!r", 1), False),
    ({"is_dm": False}, _room("!r", 1, is_dm=True), False),
    ({"is_encrypted": True}, _room("!r", 1, is_encrypted=True), True),
    ({"is_encrypted": False}, _room("!r", 1, is_encrypted=True), False),
    ({"is_invite": True}, _room("!r", 1, membership="invite"), True),
    ({"is_invite": True}, _room("!r", 1), False),
    ({"is_invite": False}, _room("!r", 1, membership="invite"), False),
    ({"room_types": ["m.space"]}, _room("!r", 1, room_type="m.space"), True),
    ({"room_types": ["m.space"]}, _room("!r", 1), False),
    ({"room_types": [None]}, _room("!r", 1), True),
    ({"not_room_types": ["m.space"]}, _room("!r", 1, room_type="m.space"), False),
    ({"not_room_types": ["m.space"]}, _room("!r", 1), True),
    ({"spaces": ["!s"]}, _room("!r", 1, in_spaces=frozenset({"!s"})), True),
    ({"spaces": ["!s"]}, _room("!r", 1), False),
    ({}, _room("!r", 1, membership="ban"), True),
])
def test_list_filters(filters: dict[str, Any], room: RoomFacts, kept: bool) -> None:
    assert ListFilters.from_json(filters, "f").accepts(room) is kept


@pytest.mark.parametrize(("scope", "lists_of_room", "subscribed", "covered"), [
    (RoomScope(), {"all"}, False, True),
    (RoomScope(), set(), True, True),
    (RoomScope(), set(), False, False),
    (RoomScope(lists=("dms",)), {"all"}, False, False),
    (RoomScope(lists=("dms",)), {"all", "dms"}, False, True),
    (RoomScope(rooms=("!other",)), set(), True, False),
    (RoomScope(rooms=("!r",)), set(), True, True),
])
def test_extension_scope(scope: RoomScope, lists_of_room: set[str], subscribed: bool,
                         covered: bool) -> None:
    assert scope.covers("!r", lists_of_room, subscribed) is covered


@pytest.mark.parametrize(("before", "request_", "changed", "remembered"), [
    # Dropping a pair keeps it remembered until its state changes.
    ([["m.room.name", ""], ["m.room.topic", ""]], [["m.room.name", ""]], set(),
     [["m.room.name", ""], ["m.room.topic", ""]]),
    ([["m.room.name", ""], ["m.room.topic", ""]], [["m.room.name", ""]], {("m.room.topic", "")},
     [["m.room.name", ""]]),
    ([["m.room.member", "$ME"]], [], {("m.room.member", ME)}, []),
    ([["m.room.member", "$ME"]], [], {("m.room.member", "@other:x")}, [["m.room.member", "$ME"]]),
    # Wildcards and $LAZY are not remembered once dropped.
    ([["m.room.member", "*"], ["m.room.member", "$LAZY"]], [], set(), []),
    ([["*", "*"]], [["m.room.name", ""]], set(), [["m.room.name", ""]]),
])
def test_required_state_remembered(before: list[list[str]], request_: list[list[str]],
                                   changed: set[tuple[str, str]], remembered: list[list[str]]) -> None:
    old = RequiredState.from_json(before)
    assert old.remembered_after(RequiredState.from_json(request_), changed, ME).to_json() == remembered


def test_after_everything_nothing_is_added() -> None:
    everything = RequiredState.from_json([["*", "*"]])
    assert not RequiredState.from_json([["m.room.name", ""]]).added_since(everything).pairs

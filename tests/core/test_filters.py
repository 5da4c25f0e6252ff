"""Filters: validation, parsing, matching and event_fields."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from tests.spec_schema import CS_API_DIR
from veche.core.filters import (
    DEFAULT_FILTER,
    EventFilter,
    Filter,
    RoomEventFilter,
    RoomFilter,
    apply_event_fields,
    validate_filter,
)

ROOM = "!room:example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"


def ev(type_: str = "m.room.message", sender: str = ALICE, room_id: str | None = ROOM,
       **content: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"type": type_, "sender": sender, "event_id": "$e:x",
                         "origin_server_ts": 1, "content": content}
    if room_id is not None:
        e["room_id"] = room_id
    return e


# --------------------------------------------------------------------------- validation


def _spec_filter_examples() -> list[Any]:
    doc = yaml.safe_load((CS_API_DIR / "filter.yaml").read_text())
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "example" and isinstance(v, dict) and ("room" in v or "presence" in v):
                    found.append(v)
                elif k == "examples" and isinstance(v, dict):
                    for ex in v.values():
                        if isinstance(ex, dict) and isinstance(ex.get("value"), dict) and (
                                "room" in ex["value"] or "presence" in ex["value"]):
                            found.append(ex["value"])
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return found


def test_spec_example_filters_are_valid() -> None:
    examples = _spec_filter_examples()
    assert examples, "expected filter examples in filter.yaml"
    for example in examples:
        assert validate_filter(example) == example
        Filter.from_json(example)


def test_validate_accepts_full_filter() -> None:
    body = {
        "event_fields": ["type", "content.body", "content.m\\.relates_to"],
        "event_format": "federation",
        "presence": {"limit": 0, "types": ["m.presence"], "senders": [ALICE],
                     "not_senders": [BOB]},
        "account_data": {"not_types": ["*"]},
        "room": {
            "rooms": [ROOM], "not_rooms": ["!bad:x"], "include_leave": True,
            "timeline": {"limit": 20, "types": ["m.*"], "not_types": ["m.room.member"],
                         "contains_url": False, "lazy_load_members": True,
                         "include_redundant_members": False,
                         "unread_thread_notifications": True,
                         "related_by_rel_types": ["m.thread"], "related_by_senders": [ALICE],
                         "rooms": [ROOM], "not_rooms": []},
            "state": {"lazy_load_members": True},
            "ephemeral": {"types": ["m.typing"]},
            "account_data": {"limit": 1},
        },
        "org.example.unknown": {"kept": True},
    }
    assert validate_filter(body) == body


def test_validate_normalizes() -> None:
    out = validate_filter({"room": {"timeline": {"limit": 10.0, "types": None}, "state": None},
                           "presence": None})
    assert out == {"room": {"timeline": {"limit": 10}}}
    assert isinstance(out["room"]["timeline"]["limit"], int)
    body = {"room": {"timeline": {"limit": 3}}}
    validate_filter(body)
    assert body == {"room": {"timeline": {"limit": 3}}}  # input not mutated


@pytest.mark.parametrize(("body", "field"), [
    ([], "object"),
    ("x", "object"),
    ({"event_fields": "content.body"}, "event_fields"),
    ({"event_fields": [10]}, "event_fields[0]"),
    ({"event_format": "other"}, "event_format"),
    ({"presence": "not_an_object"}, "presence"),
    ({"account_data": []}, "account_data"),
    ({"room": 5}, "room"),
    ({"room": {"timeline": "not_an_object"}}, "room.timeline"),
    ({"room": {"state": "not_an_object"}}, "room.state"),
    ({"room": {"ephemeral": "not_an_object"}}, "room.ephemeral"),
    ({"room": {"account_data": "not_an_object"}}, "room.account_data"),
    ({"room": {"timeline": {"rooms": "not_a_list"}}}, "room.timeline.rooms"),
    ({"room": {"timeline": {"rooms": ["@notaroom:x"]}}}, "room.timeline.rooms[0]"),
    ({"room": {"rooms": [ROOM, 5]}}, "room.rooms[1]"),
    ({"room": {"not_rooms": ["#alias:x"]}}, "room.not_rooms[0]"),
    ({"room": {"include_leave": "yes"}}, "room.include_leave"),
    ({"room": {"timeline": {"limit": -1}}}, "room.timeline.limit"),
    ({"room": {"timeline": {"limit": "10"}}}, "room.timeline.limit"),
    ({"room": {"timeline": {"limit": True}}}, "room.timeline.limit"),
    ({"room": {"timeline": {"limit": 1.5}}}, "room.timeline.limit"),
    ({"room": {"state": {"types": [1]}}}, "room.state.types[0]"),
    ({"room": {"state": {"not_types": "m.room.member"}}}, "room.state.not_types"),
    ({"room": {"state": {"senders": ["alice"]}}}, "room.state.senders[0]"),
    ({"room": {"state": {"not_senders": [None]}}}, "room.state.not_senders[0]"),
    ({"room": {"state": {"lazy_load_members": 1}}}, "room.state.lazy_load_members"),
    ({"room": {"state": {"include_redundant_members": "true"}}},
     "room.state.include_redundant_members"),
    ({"room": {"timeline": {"contains_url": "yes"}}}, "room.timeline.contains_url"),
    ({"room": {"timeline": {"unread_thread_notifications": 0}}},
     "room.timeline.unread_thread_notifications"),
    ({"room": {"timeline": {"related_by_rel_types": "m.thread"}}},
     "room.timeline.related_by_rel_types"),
    ({"room": {"timeline": {"related_by_senders": ["bob"]}}},
     "room.timeline.related_by_senders[0]"),
    ({"presence": {"limit": -5}}, "presence.limit"),
    ({"account_data": {"types": {}}}, "account_data.types"),
])
def test_validate_rejects_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        validate_filter(body)
    with pytest.raises(ValueError):
        Filter.from_json(body)


# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    f = Filter.from_json({})
    assert f == DEFAULT_FILTER == Filter.default()
    assert f.event_format == "client" and f.event_fields is None
    assert f.room.room_allowed(ROOM) and not f.room.include_leave
    assert f.room.timeline.matches(ev()) and f.presence.matches(ev("m.presence"))
    assert f.room.timeline.unrestricted and f.room.timeline.limit is None
    assert f.room.timeline.limit_or(10) == 10
    assert not f.room.state.lazy_load_members and not f.lazy_load_members
    assert f.apply_event_fields(ev()) == ev()
    assert Filter.from_json({"room": {}}).room is DEFAULT_FILTER.room


def test_limits() -> None:
    f = Filter.from_json({"room": {"timeline": {"limit": 0}}, "presence": {"limit": 500}})
    assert f.room.timeline.limit == 0 and f.room.timeline.limit_or(10) == 0
    assert f.presence.limit_or(10, maximum=100) == 100
    assert f.room.timeline.unrestricted  # a limit alone does not restrict which events


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(("spec", "event_type", "expected"), [
    ({}, "m.room.message", True),
    ({"types": ["m.room.message"]}, "m.room.message", True),
    ({"types": ["m.room.message"]}, "m.room.member", False),
    ({"types": []}, "m.room.message", False),
    ({"types": ["m.*"]}, "m.room.message", True),
    ({"types": ["m.*"]}, "org.example", False),
    ({"types": ["*"]}, "anything", True),
    ({"types": ["m.room.*.x"]}, "m.room.a.b.x", True),
    ({"types": ["m.room.*.x"]}, "m.room.a.b.y", False),
    ({"types": ["m.room.mes"]}, "m.room.message", False),
    ({"types": ["m.room.message"]}, "M.ROOM.MESSAGE", False),
    ({"types": ["m.?oom.message"]}, "m.room.message", False),  # only * is a wildcard
    ({"types": ["m.(room).message"]}, "m.(room).message", True),
    ({"not_types": ["m.room.member"]}, "m.room.member", False),
    ({"not_types": ["m.room.member"]}, "m.room.message", True),
    ({"not_types": ["*"]}, "m.room.message", False),
    ({"types": ["m.room.message"], "not_types": ["m.room.*"]}, "m.room.message", False),
    ({"types": ["m.room.*"], "not_types": ["m.room.member"]}, "m.room.topic", True),
])
def test_type_matching(spec: dict[str, Any], event_type: str, expected: bool) -> None:
    assert EventFilter.from_json(spec).matches(ev(event_type)) is expected
    assert RoomEventFilter.from_json(spec).matches(ev(event_type), ROOM) is expected


def test_type_missing_or_non_string() -> None:
    event = {"sender": ALICE, "content": {}}
    assert not EventFilter.from_json({"types": ["*"]}).matches(event)
    assert EventFilter.from_json({"not_types": ["*"]}).matches(event)
    assert not EventFilter.from_json({"types": ["*"]}).matches({**event, "type": 5})


@pytest.mark.parametrize(("spec", "sender", "expected"), [
    ({"senders": [ALICE]}, ALICE, True),
    ({"senders": [ALICE]}, BOB, False),
    ({"senders": []}, ALICE, False),
    ({"not_senders": [ALICE]}, ALICE, False),
    ({"not_senders": [ALICE]}, BOB, True),
    ({"senders": [ALICE], "not_senders": [ALICE]}, ALICE, False),
])
def test_sender_matching(spec: dict[str, Any], sender: str, expected: bool) -> None:
    assert EventFilter.from_json(spec).matches(ev(sender=sender)) is expected


def test_sender_fallbacks() -> None:
    presence_legacy = {"type": "m.presence", "content": {"user_id": ALICE}}
    assert EventFilter.from_json({"senders": [ALICE]}).matches(presence_legacy)
    account_data = {"type": "m.tag", "content": {"tags": {}}}
    assert not EventFilter.from_json({"senders": [ALICE]}).matches(account_data)
    assert EventFilter.from_json({"not_senders": [ALICE]}).matches(account_data)


def test_room_event_filter_rooms() -> None:
    f = RoomEventFilter.from_json({"rooms": [ROOM, "!b:x"], "not_rooms": ["!b:x"]})
    assert f.matches(ev(room_id=ROOM))
    assert f.matches(ev(room_id=None), ROOM)  # sync events carry no room_id
    assert not f.matches(ev(room_id="!b:x"))
    assert not f.matches(ev(room_id="!c:x"))
    assert not f.matches(ev(room_id=None))
    assert f.matches(ev(room_id="!c:x"), ROOM)  # explicit room_id wins
    assert RoomEventFilter.from_json({"not_rooms": ["!b:x"]}).matches(ev(room_id=None))


@pytest.mark.parametrize(("contains_url", "content", "expected"), [
    (None, {"url": "mxc://x/y"}, True),
    (None, {}, True),
    (True, {"url": "mxc://x/y"}, True),
    (True, {"body": "x"}, False),
    (False, {"url": "mxc://x/y"}, False),
    (False, {"body": "x"}, True),
])
def test_contains_url(contains_url: bool | None, content: dict[str, Any], expected: bool) -> None:
    spec = {} if contains_url is None else {"contains_url": contains_url}
    assert RoomEventFilter.from_json(spec).matches(ev(**content)) is expected


def test_room_event_filter_flags() -> None:
    f = RoomEventFilter.from_json({"lazy_load_members": True, "include_redundant_members": True,
                                   "unread_thread_notifications": True})
    assert f.lazy_load_members and f.include_redundant_members
    assert f.unread_thread_notifications and f.unrestricted
    full = Filter.from_json({"room": {"state": {"lazy_load_members": True}}})
    assert full.lazy_load_members


def test_relation_filters() -> None:
    f = RoomEventFilter.from_json({"related_by_rel_types": ["m.thread"],
                                   "related_by_senders": [ALICE]})
    assert f.has_relation_filter
    assert f.matches_relations([("m.thread", ALICE)])
    assert not f.matches_relations([("m.thread", BOB), ("m.annotation", ALICE)])
    assert not f.matches_relations([])
    g = RoomEventFilter.from_json({"io.element.relation_types": ["m.thread"]})
    assert g.related_by_rel_types == frozenset({"m.thread"}) and g.related_by_senders is None
    assert g.matches_relations([("m.thread", BOB)])
    assert RoomEventFilter.from_json({}).matches_relations([])


def test_room_filter() -> None:
    rf = Filter.from_json({"room": {"rooms": [ROOM, "!b:x"], "not_rooms": ["!b:x"],
                                    "include_leave": True}}).room
    assert rf.room_allowed(ROOM) and not rf.room_allowed("!b:x")
    assert not rf.room_allowed("!c:x") and rf.include_leave
    assert rf.filter_rooms([ROOM, "!b:x", "!c:x"]) == [ROOM]
    assert RoomFilter.from_json({"not_rooms": ["!b:x"]}).room_allowed("!c:x")
    assert not RoomFilter.from_json({"rooms": []}).room_allowed(ROOM)


def test_sections_are_independent() -> None:
    f = Filter.from_json({
        "presence": {"not_types": ["*"]},
        "account_data": {"types": ["m.direct"]},
        "room": {"timeline": {"types": ["m.room.message"], "limit": 5},
                 "state": {"types": ["m.room.name"]},
                 "ephemeral": {"not_types": ["m.receipt"]},
                 "account_data": {"types": ["m.tag"]}},
    })
    assert not f.presence.matches({"type": "m.presence", "sender": ALICE})
    assert f.account_data.matches({"type": "m.direct", "content": {}})
    assert not f.account_data.matches({"type": "m.push_rules", "content": {}})
    assert f.room.timeline.matches(ev()) and not f.room.timeline.matches(ev("m.room.name"))
    assert f.room.state.matches(ev("m.room.name")) and not f.room.state.matches(ev())
    assert not f.room.ephemeral.matches({"type": "m.receipt", "content": {}})
    assert f.room.ephemeral.matches({"type": "m.typing", "content": {}})
    assert f.room.account_data.matches({"type": "m.tag", "content": {}}, ROOM)
    assert f.room.timeline.limit == 5 and f.room.state.limit is None
    events = [ev(), ev("m.room.name"), ev("m.room.message", sender=BOB)]
    assert f.room.timeline.filter(events, ROOM) == [events[0], events[2]]
    assert f.presence.filter([{"type": "m.presence"}]) == []


def test_to_json_round_trip() -> None:
    body = {"room": {"timeline": {"limit": 10.0}}, "event_format": "client"}
    f = Filter.from_json(body)
    assert f.to_json() == {"room": {"timeline": {"limit": 10}}, "event_format": "client"}
    assert Filter.from_json(f.to_json()) == f


# --------------------------------------------------------------------------- event_fields


EVENT = {
    "type": "m.room.message", "sender": ALICE, "event_id": "$e", "origin_server_ts": 5,
    "content": {"body": "hi", "msgtype": "m.text",
                "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"},
                "m\\foo": 1, "nested": {"a": {"b": 2, "c": 3}}},
    "unsigned": {"age": 10},
}


@pytest.mark.parametrize(("fields", "expected"), [
    (None, EVENT),
    ([], EVENT),
    (["type"], {"type": "m.room.message"}),
    (["type", "content.body"], {"type": "m.room.message", "content": {"body": "hi"}}),
    (["content.body", "content.msgtype"], {"content": {"body": "hi", "msgtype": "m.text"}}),
    (["content.m\\.relates_to.rel_type"], {"content": {"m.relates_to": {"rel_type": "m.thread"}}}),
    (["content.m\\.relates_to"],
     {"content": {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}}),
    (["content.m\\\\foo"], {"content": {"m\\foo": 1}}),
    (["content.nested.a.b", "content.nested.a"], {"content": {"nested": {"a": {"b": 2, "c": 3}}}}),
    (["content.nested.a", "content.nested.a.b"], {"content": {"nested": {"a": {"b": 2, "c": 3}}}}),
    (["content.missing", "nope", "content.body.x"], {}),
    (["unsigned.age", "event_id"], {"unsigned": {"age": 10}, "event_id": "$e"}),
])
def test_event_fields(fields: list[str] | None, expected: dict[str, Any]) -> None:
    assert apply_event_fields(EVENT, fields) == expected
    f = Filter.from_json({"event_fields": fields} if fields is not None else {})
    assert f.apply_event_fields(EVENT) == expected


def test_event_fields_does_not_mutate() -> None:
    before = repr(EVENT)
    out = apply_event_fields(EVENT, ["content.body"])
    out["content"]["body"] = "changed"
    assert repr(EVENT) == before
    frozen = MappingProxyType({"content": MappingProxyType(
        {"nested": MappingProxyType({"a": MappingProxyType({"b": 2, "c": 3})})})})
    out = apply_event_fields(frozen, ["content.nested.a", "content.nested.a.b"])
    assert out == {"content": {"nested": {"a": {"b": 2, "c": 3}}}}

"""Push rules: the default ruleset against the spec text, evaluation, merging, validation."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.spec_schema import SPEC_ROOT
from veche.core.push_rules import (
    PushEvaluator,
    actions_highlight,
    actions_notify,
    actions_tweaks,
    default_ruleset,
    evaluate,
    find_rule,
    glob_to_regex,
    merge_user_rules,
    normalize_actions,
    parse_dotted_path,
    place_rule,
    validate_rule,
)

ME = "@alice:example.org"
OTHER = "@bob:example.org"
ROOM = "!room:example.org"
PUSH_MD = SPEC_ROOT / "content" / "client-server-api" / "modules" / "push.md"


# --------------------------------------------------------------------------- spec text


def _spec_default_rules() -> dict[str, list[dict[str, Any]]]:
    """Parse the rule definitions out of the spec's "Predefined Rules" section."""
    text = PUSH_MD.read_text(encoding="utf-8")
    section = text.split("#### Predefined Rules", 1)[1].split("#### Push Rules: API", 1)[0]
    parts = re.split(r"^##### Default (Override|Content|Underride) Rules\s*$", section,
                     flags=re.MULTILINE)
    rules: dict[str, list[dict[str, Any]]] = {"override": [], "content": [], "underride": []}
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        for block in re.findall(r"```json\n(.*?)```", body, flags=re.DOTALL):
            rule = json.loads(block.replace("[the user's Matrix ID]", ME))
            rules[heading.lower()].append(rule)
    return rules


SPEC_RULES = _spec_default_rules()


def test_spec_text_was_parsed() -> None:
    assert len(SPEC_RULES["override"]) >= 10
    assert len(SPEC_RULES["underride"]) == 5


@pytest.mark.parametrize("kind", ["override", "content", "underride"])
def test_default_rules_match_spec_text_in_order(kind: str) -> None:
    ours = default_ruleset(ME)["global"][kind]
    assert ours == SPEC_RULES[kind]


def test_default_ruleset_shape() -> None:
    rs = default_ruleset(ME)
    assert set(rs) == {"global"}
    assert set(rs["global"]) == {"override", "content", "room", "sender", "underride"}
    assert rs["global"]["room"] == [] and rs["global"]["sender"] == []
    for kind, rules in rs["global"].items():
        for rule in rules:
            assert rule["default"] is True and rule["rule_id"].startswith("."), (kind, rule)
            assert isinstance(rule["enabled"], bool)
    assert rs["global"]["override"][0]["rule_id"] == ".m.rule.master"
    assert rs["global"]["override"][0]["enabled"] is False
    # Fresh copies every call.
    rs["global"]["override"][1]["actions"].append("notify")
    assert default_ruleset(ME)["global"]["override"][1]["actions"] == []


def test_default_ruleset_validates_against_spec_schema() -> None:
    from tests.spec_schema import validate_response

    validate_response("GET", "/_matrix/client/v3/pushrules/", 200, default_ruleset(ME))
    merged = merge_user_rules(ME, [{"kind": "room", "rule_id": ROOM, "actions": []}], {}, {})
    validate_response("GET", "/_matrix/client/v3/pushrules/", 200, merged)


# --------------------------------------------------------------------------- default rules fire


def msg(body: str = "hello", **content: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "sender": OTHER, "room_id": ROOM, "event_id": "$e",
            "content": {"msgtype": "m.text", "body": body, **content}}


def state(type_: str, state_key: str = "", **content: Any) -> dict[str, Any]:
    return {"type": type_, "sender": OTHER, "room_id": ROOM, "event_id": "$s",
            "state_key": state_key, "content": content}


CTX: dict[str, Any] = {"user_id": ME, "display_name": "Alice", "room_member_count": 5,
                       "power_levels": {}, "sender_power_level": 0}
SOUND = {"set_tweak": "sound", "value": "default"}
HL = {"set_tweak": "highlight"}

DEFAULT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], str | None, list[Any]]] = [
    ("notice suppressed", msg(msgtype="m.notice"), {}, ".m.rule.suppress_notices", []),
    ("invite for me", state("m.room.member", ME, membership="invite"), {},
     ".m.rule.invite_for_me", ["notify", SOUND]),
    ("invite for someone else", state("m.room.member", "@carol:x", membership="invite"), {},
     ".m.rule.member_event", []),
    ("join", state("m.room.member", OTHER, membership="join"), {}, ".m.rule.member_event", []),
    ("user mention", msg("hi", **{"m.mentions": {"user_ids": [ME]}}), {},
     ".m.rule.is_user_mention", ["notify", SOUND, HL]),
    ("mention of another", msg("hi", **{"m.mentions": {"user_ids": ["@x:y"]}}), {},
     ".m.rule.message", ["notify"]),
    ("room mention with permission", msg("hi", **{"m.mentions": {"room": True}}),
     {"sender_power_level": 50}, ".m.rule.is_room_mention", ["notify", HL]),
    ("room mention without permission", msg("hi", **{"m.mentions": {"room": True}}),
     {"sender_power_level": 49}, ".m.rule.message", ["notify"]),
    ("room mention, custom notification level",
     msg("hi", **{"m.mentions": {"room": True}}),
     {"sender_power_level": 10, "power_levels": {"notifications": {"room": 10}}},
     ".m.rule.is_room_mention", ["notify", HL]),
    ("room mention string value is not true", msg("hi", **{"m.mentions": {"room": "true"}}),
     {"sender_power_level": 100}, ".m.rule.message", ["notify"]),
    ("tombstone", state("m.room.tombstone", body="bye", replacement_room="!n:x"), {},
     ".m.rule.tombstone", ["notify", HL]),
    ("tombstone-typed message event has no state_key",
     {"type": "m.room.tombstone", "sender": OTHER, "content": {}}, {}, None, []),
    ("reaction", {"type": "m.reaction", "sender": OTHER, "content": {}}, {},
     ".m.rule.reaction", []),
    ("server acl", state("m.room.server_acl", allow=["*"]), {}, ".m.rule.room.server_acl", []),
    ("edit", msg("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}), {},
     ".m.rule.suppress_edits", []),
    ("call", {"type": "m.call.invite", "sender": OTHER, "content": {}}, {}, ".m.rule.call",
     ["notify", {"set_tweak": "sound", "value": "ring"}]),
    ("encrypted dm", {"type": "m.room.encrypted", "sender": OTHER, "content": {}},
     {"room_member_count": 2}, ".m.rule.encrypted_room_one_to_one", ["notify", SOUND]),
    ("dm message", msg(), {"room_member_count": 2}, ".m.rule.room_one_to_one",
     ["notify", SOUND]),
    ("group message", msg(), {}, ".m.rule.message", ["notify"]),
    ("encrypted group", {"type": "m.room.encrypted", "sender": OTHER, "content": {}}, {},
     ".m.rule.encrypted", ["notify"]),
    ("body mentioning user name no longer highlights", msg("hey alice!"), {},
     ".m.rule.message", ["notify"]),
    ("topic change matches nothing", state("m.room.topic", topic="x"), {}, None, []),
    ("own message never notifies", {**msg(**{"m.mentions": {"user_ids": [ME]}}), "sender": ME},
     {}, None, []),
]


@pytest.mark.parametrize(("name", "event", "ctx", "rule_id", "actions"), DEFAULT_CASES,
                         ids=[c[0] for c in DEFAULT_CASES])
def test_default_rule_fires(name: str, event: dict[str, Any], ctx: dict[str, Any],
                            rule_id: str | None, actions: list[Any]) -> None:
    ev = PushEvaluator(default_ruleset(ME))
    found = ev.matching_rule(event, **{**CTX, **ctx})
    assert (found[1] if found else None) == rule_id
    assert ev.evaluate(event, **{**CTX, **ctx}) == actions
    assert evaluate(event, default_ruleset(ME), **{**CTX, **ctx}) == actions


def test_every_default_rule_is_exercised() -> None:
    fired = {c[3] for c in DEFAULT_CASES}
    all_ids = {r["rule_id"] for rules in default_ruleset(ME)["global"].values() for r in rules}
    assert all_ids - {".m.rule.master"} <= fired


def test_master_rule_when_enabled_silences_everything() -> None:
    rs = merge_user_rules(ME, [{"kind": "override", "rule_id": "loud", "conditions": [],
                                "actions": ["notify"]}], {".m.rule.master": True}, {})
    ev = PushEvaluator(rs)
    assert ev.matching_rule(msg(), **CTX) == ("override", ".m.rule.master", [])


def test_disabled_default_rule_falls_through() -> None:
    rs = merge_user_rules(ME, [], {".m.rule.suppress_notices": False}, {})
    assert evaluate(msg(msgtype="m.notice"), rs, **CTX) == ["notify"]


def test_default_rule_actions_override() -> None:
    rs = merge_user_rules(ME, [], {}, {"underride/.m.rule.message": ["notify", HL]})
    assert evaluate(msg(), rs, **CTX) == ["notify", HL]
    assert find_rule(rs, "underride", ".m.rule.message") == {
        **SPEC_RULES["underride"][3], "actions": ["notify", HL]}


# --------------------------------------------------------------------------- conditions


def run(conditions: list[dict[str, Any]], event: dict[str, Any], **ctx: Any) -> bool:
    rs = {"global": {"override": [{"rule_id": "r", "default": False, "enabled": True,
                                   "conditions": conditions, "actions": ["notify"]}]}}
    return evaluate(event, rs, **{**CTX, **ctx}) == ["notify"]


def em(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


@pytest.mark.parametrize(("topic", "expected"), [
    ("Lunch plans", True), ("LUNCH", True), (" lunch", False), ("lunc", False), (None, False),
])
def test_event_match_spec_example(topic: Any, expected: bool) -> None:
    event = state("m.room.topic", topic=topic)
    assert run([em("content.topic", "lunc?*")], event) is expected


@pytest.mark.parametrize(("body", "expected"), [
    ("An example event.", True), ("exple", True), ("An exciting triple-whammy", True),
    ("examples", False), ("counterexample", False), ("EXAMPLE", True), ("ex_ple", True),
    ("example_x", False), ("line1\nexample", True),
])
def test_event_match_body_word_boundaries(body: str, expected: bool) -> None:
    assert run([em("content.body", "ex*ple")], msg(body)) is expected


def test_event_match_non_body_must_match_whole_value_and_be_string() -> None:
    assert run([em("type", "m.room.*")], msg())
    assert not run([em("type", "m.room")], msg())
    assert not run([em("content.missing", "*")], msg())
    assert not run([em("content.n", "*")], msg(n=5))
    assert not run([em("content.o", "*")], msg(o={"a": "b"}))
    assert run([em("content.msgtype", "M.TEXT")], msg())
    assert run([em("content.msgtype", "m?text")], msg())
    assert not run([em("content.msgtype", "m.text?")], msg())
    # regex metacharacters are literal
    assert not run([em("content.msgtype", "m.t[e]xt")], msg())
    assert run([em("content.x", "a+b(c)")], msg(x="a+b(c)"))


def test_a_rule_naming_a_type_matches_that_type_in_any_case_and_no_other() -> None:
    # Rules whose literal type pattern differs from the event's are skipped unread: the
    # same answer as matching them, case-insensitively, as event_match does.
    assert run([em("type", "M.Room.Message"), em("content.msgtype", "m.text")], msg())
    assert not run([em("type", "m.room.message"), em("content.msgtype", "m.text")],
                   state("m.room.topic", topic="x"))
    assert not run([em("type", "m.room.message")], {**msg(), "type": 5})
    assert run([em("type", "m.room.*"), em("type", "m.room.message")], msg())


def test_glob_to_regex() -> None:
    assert glob_to_regex("a*b?").fullmatch("AxxbZ")
    assert not glob_to_regex("a*b?").fullmatch("ab")
    assert glob_to_regex("cake", True).search("I like CAKE!")
    assert not glob_to_regex("cake", True).search("cakes")


def test_event_property_is() -> None:
    create = state("m.room.create", creator="@x:y", **{"m.federate": True})
    assert run([{"kind": "event_property_is", "key": "content.m\\.federate", "value": True}],
               create)
    for value in ("true", 1):
        ev = state("m.room.create", **{"m.federate": value})
        assert not run([{"kind": "event_property_is", "key": "content.m\\.federate",
                         "value": True}], ev)
    assert run([{"kind": "event_property_is", "key": "content.n", "value": 1}], msg(n=1))
    assert not run([{"kind": "event_property_is", "key": "content.n", "value": 1}], msg(n=True))
    assert not run([{"kind": "event_property_is", "key": "content.n", "value": 1}], msg(n=1.0))
    assert run([{"kind": "event_property_is", "key": "content.n", "value": None}], msg(n=None))
    assert not run([{"kind": "event_property_is", "key": "content.n", "value": None}], msg())
    assert not run([{"kind": "event_property_is", "key": "content.n", "value": "a"}],
                   msg(n=["a"]))
    assert not run([{"kind": "event_property_is", "key": "content.body", "value": "HELLO"}],
                   msg("hello"))


def test_event_property_contains() -> None:
    alias = state("m.room.canonical_alias", alias="#somewhere:localhost",
                  alt_aliases=["#somewhere:example.org", "#myroom:example.com"])
    cond = {"kind": "event_property_contains", "key": "content.alt_aliases",
            "value": "#myroom:example.com"}
    assert run([cond], alias)
    assert not run([{**cond, "value": ":example.com"}], alias)
    assert not run([cond], state("m.room.canonical_alias", alt_aliases="#myroom:example.com"))
    assert not run([cond], state("m.room.canonical_alias"))
    mixed = msg(xs=[{"a": 1}, [1], 1, True, None])
    assert run([{"kind": "event_property_contains", "key": "content.xs", "value": 1}], mixed)
    assert run([{"kind": "event_property_contains", "key": "content.xs", "value": True}], mixed)
    assert run([{"kind": "event_property_contains", "key": "content.xs", "value": None}], mixed)
    assert not run([{"kind": "event_property_contains", "key": "content.xs", "value": 2}], mixed)


@pytest.mark.parametrize(("path", "parts"), [
    ("content.body", ("content", "body")),
    ("content.m\\.relates_to.rel_type", ("content", "m.relates_to", "rel_type")),
    ("content.m\\\\foo", ("content", "m\\foo")),
    ("content.m\\xfoo", ("content", "m\\xfoo")),
    ("a\\\\.b", ("a\\", "b")),
    ("type", ("type",)),
    ("a..b", ("a", "", "b")),
])
def test_dotted_paths(path: str, parts: tuple[str, ...]) -> None:
    assert parse_dotted_path(path) == parts


def test_dotted_path_escapes_in_conditions() -> None:
    ev = msg(**{"m\\foo": "bar", "m": {"foo": "nope"}})
    assert run([em("content.m\\\\foo", "bar")], ev)
    assert not run([em("content.m.foo", "bar")], ev)
    assert run([em("content.m.foo", "nope")], ev)


def test_contains_display_name() -> None:
    cond = [{"kind": "contains_display_name"}]
    assert run(cond, msg("hey Alice, lunch?"))
    assert run(cond, msg("ALICE"))
    assert not run(cond, msg("Alicea"))
    assert not run(cond, msg("hey alice"), display_name=None)
    assert not run(cond, msg("hey"), display_name="")
    assert run(cond, msg("ping [bot]* now"), display_name="[bot]*")
    assert not run(cond, msg("ping [bot]x now"), display_name="[bot]*")
    assert not run(cond, state("m.room.topic", topic="Alice"))


@pytest.mark.parametrize(("is_", "count", "expected"), [
    ("2", 2, True), ("2", 3, False), ("==2", 2, True), ("<3", 2, True), ("<3", 3, False),
    (">3", 4, True), (">3", 3, False), ("<=10", 10, True), ("<=10", 11, False),
    (">=5", 5, True), (">=5", 4, False), ("bogus", 2, False), ("=2", 2, False), ("", 0, False),
])
def test_room_member_count(is_: str, count: int, expected: bool) -> None:
    assert run([{"kind": "room_member_count", "is": is_}], msg(),
               room_member_count=count) is expected


@pytest.mark.parametrize(("pl", "sender", "expected"), [
    ({}, 50, True), ({}, 49, False), ({"notifications": {"room": 0}}, 0, True),
    ({"notifications": {"room": 100}}, 99, False), ({"notifications": {"room": "20"}}, 20, True),
    ({"notifications": {}}, 50, True),
])
def test_sender_notification_permission(pl: dict[str, Any], sender: int, expected: bool) -> None:
    cond = [{"kind": "sender_notification_permission", "key": "room"}]
    assert run(cond, msg(), power_levels=pl, sender_power_level=sender) is expected


def test_unknown_or_malformed_conditions_never_match() -> None:
    assert not run([{"kind": "org.example.future"}], msg())
    assert not run([{"kind": "event_match", "key": "type"}], msg())
    assert not run([{"kind": "room_member_count"}], msg())
    assert not run(["not a dict"], msg())  # type: ignore[list-item]
    assert run([], msg())  # no conditions: always matches


def test_historical_actions_are_ignored() -> None:
    rs = {"global": {"override": [{"rule_id": "r", "default": False, "enabled": True,
                                   "conditions": [], "actions": ["dont_notify", "coalesce"]}]}}
    assert evaluate(msg(), rs, **CTX) == []
    assert normalize_actions(["notify", "coalesce", HL]) == ["notify", HL]


# --------------------------------------------------------------------------- user rules


def test_user_rule_ordering_and_kinds() -> None:
    user_rules = [
        {"kind": "override", "rule_id": "o1", "conditions": [em("content.body", "urgent")],
         "actions": ["notify", HL]},
        {"kind": "content", "rule_id": "cake", "pattern": "cake", "actions": ["notify", SOUND]},
        {"kind": "content", "rule_id": "cakelie", "pattern": "cake*lie", "actions": []},
        {"kind": "room", "rule_id": ROOM, "actions": []},
        {"kind": "sender", "rule_id": OTHER, "actions": ["notify", HL]},
        {"kind": "underride", "rule_id": "u1", "conditions": [em("type", "m.room.message")],
         "actions": ["notify", {"set_tweak": "sound", "value": "u1"}]},
    ]
    rs = merge_user_rules(ME, user_rules, {}, {})
    g = rs["global"]
    assert [r["rule_id"] for r in g["override"]][:2] == [".m.rule.master", "o1"]
    assert [r["rule_id"] for r in g["override"]][2] == ".m.rule.suppress_notices"
    assert [r["rule_id"] for r in g["content"]] == ["cake", "cakelie"]
    assert [r["rule_id"] for r in g["underride"]][0] == "u1"
    assert g["underride"][1]["rule_id"] == ".m.rule.call"
    assert g["room"] == [{"rule_id": ROOM, "default": False, "enabled": True, "actions": []}]
    assert g["content"][0] == {"rule_id": "cake", "default": False, "enabled": True,
                               "pattern": "cake", "actions": ["notify", SOUND]}
    assert "conditions" in g["override"][1] and "pattern" not in g["override"][1]

    ev = PushEvaluator(rs)

    def which(event: dict[str, Any], **ctx: Any) -> str | None:
        found = ev.matching_rule(event, **{**CTX, **ctx})
        return found[1] if found else None

    # override beats content beats room beats sender beats underride
    assert which(msg("urgent cake")) == "o1"
    assert which(msg("cake time")) == "cake"
    assert which(msg("the cake is a lie")) == "cake"  # list order breaks ties
    assert which({**msg("hi"), "room_id": ROOM}) == ROOM
    assert which({**msg("hi"), "room_id": "!other:x"}) == OTHER
    assert which({**msg("hi"), "room_id": "!other:x", "sender": "@z:x"}) == "u1"
    # user override rules lose to .m.rule.master only; .m.rule.suppress_notices comes later
    assert which(msg("urgent", msgtype="m.notice")) == "o1"
    # events no user rule matches fall through to the server defaults
    assert which(state("m.room.member", OTHER, membership="join")) == ".m.rule.member_event"


def test_user_rule_enabled_flags() -> None:
    rules = [{"kind": "override", "rule_id": "o1", "conditions": [], "actions": ["notify"],
              "enabled": False},
             {"kind": "override", "rule_id": "o2", "conditions": [], "actions": ["notify", HL]}]
    rs = merge_user_rules(ME, rules, {}, {})
    assert find_rule(rs, "override", "o1")["enabled"] is False  # type: ignore[index]
    assert evaluate(msg(), rs, **CTX) == ["notify", HL]
    rs = merge_user_rules(ME, rules, {"override/o2": False, "override/o1": True}, {})
    assert evaluate(msg(), rs, **CTX) == ["notify"]
    rs = merge_user_rules(ME, rules, {"global/override/o1": True}, {"override/o1": []})
    assert evaluate(msg(), rs, **CTX) == []


def test_merge_ignores_user_rules_with_reserved_ids_and_duplicates() -> None:
    rules = [{"kind": "override", "rule_id": ".m.rule.fake", "conditions": [], "actions": []},
             {"kind": "override", "rule_id": "a", "conditions": [], "actions": ["notify"]},
             {"kind": "override", "rule_id": "a", "conditions": [], "actions": []},
             {"kind": "bogus", "rule_id": "b", "actions": []}]
    rs = merge_user_rules(ME, rules, {}, {})
    ids = [r["rule_id"] for r in rs["global"]["override"]]
    assert ".m.rule.fake" not in ids and ids.count("a") == 1
    assert find_rule(rs, "override", "a")["actions"] == ["notify"]  # type: ignore[index]
    assert find_rule(rs, "override", "missing") is None


def test_place_rule() -> None:
    a, b, c = ({"rule_id": x, "actions": []} for x in "abc")
    assert [r["rule_id"] for r in place_rule([], a)] == ["a"]
    assert [r["rule_id"] for r in place_rule([a, b], c)] == ["c", "a", "b"]
    assert [r["rule_id"] for r in place_rule([a, b], c, before="b")] == ["a", "c", "b"]
    assert [r["rule_id"] for r in place_rule([a, b], c, after="a")] == ["a", "c", "b"]
    assert [r["rule_id"] for r in place_rule([a, b], c, after="b")] == ["a", "b", "c"]
    assert [r["rule_id"] for r in place_rule([a, b], c, before="a", after="b")] == ["c", "a", "b"]
    # existing rule: updated in place, or moved when before/after given
    updated = place_rule([a, b, c], {"rule_id": "b", "actions": ["notify"]})
    assert [r["rule_id"] for r in updated] == ["a", "b", "c"] and updated[1]["actions"] == ["notify"]
    assert [r["rule_id"] for r in place_rule([a, b, c], a, after="c")] == ["b", "c", "a"]
    with pytest.raises(ValueError, match="before/after rule not found: zz"):
        place_rule([a], b, before="zz")
    with pytest.raises(ValueError, match="server-default"):
        place_rule([a], b, before=".m.rule.master")


# --------------------------------------------------------------------------- validation


def test_validate_rule_normalizes() -> None:
    assert validate_rule("content", "cake", {"pattern": "cake*lie", "actions": ["notify"]}) == {
        "rule_id": "cake", "default": False, "enabled": True, "pattern": "cake*lie",
        "actions": ["notify"]}
    assert validate_rule("room", ROOM, {"actions": ["dont_notify"]}) == {
        "rule_id": ROOM, "default": False, "enabled": True, "actions": []}
    assert validate_rule("sender", OTHER, {"actions": []})["rule_id"] == OTHER
    rule = validate_rule("override", "beer", {
        "conditions": [em("content.body", "beer"), {"kind": "room_member_count", "is": "<=10"},
                       {"kind": "event_property_is", "key": "a", "value": None},
                       {"kind": "org.example.future", "x": 1}],
        "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}],
        "pattern": "ignored"})
    assert rule["conditions"][1] == {"kind": "room_member_count", "is": "<=10"}
    assert rule["conditions"][3] == {"kind": "org.example.future", "x": 1}
    assert "pattern" not in rule
    assert validate_rule("underride", "u", {"actions": []})["conditions"] == []


@pytest.mark.parametrize(("kind", "rule_id", "body", "message"), [
    ("bogus", "x", {"actions": []}, "kind"),
    ("override", ".m.rule.master", {"actions": []}, "reserved"),
    ("override", "a/b", {"actions": []}, "'/'"),
    ("override", "a\\b", {"actions": []}, "'/'"),
    ("override", "", {"actions": []}, "non-empty"),
    ("override", "x", [], "object"),
    ("override", "x", {}, "actions"),
    ("override", "x", {"actions": "notify"}, "list"),
    ("override", "x", {"actions": ["explode"]}, "Unrecognised action"),
    ("override", "x", {"actions": [{"value": 1}]}, "set_tweak"),
    ("override", "x", {"actions": [5]}, "Unrecognised action"),
    ("content", "x", {"actions": []}, "pattern"),
    ("content", "x", {"actions": [], "pattern": 5}, "pattern"),
    ("room", "notaroom", {"actions": []}, "room ID"),
    ("sender", "notauser", {"actions": []}, "user ID"),
    ("override", "x", {"actions": [], "conditions": {}}, "conditions"),
    ("override", "x", {"actions": [], "conditions": [5]}, "condition"),
    ("override", "x", {"actions": [], "conditions": [{}]}, "kind"),
    ("override", "x", {"actions": [], "conditions": [{"kind": "event_match", "key": "a"}]},
     "pattern"),
    ("override", "x", {"actions": [], "conditions": [{"kind": "event_match", "pattern": "a"}]},
     "key"),
    ("override", "x", {"actions": [], "conditions": [{"kind": "event_property_is", "key": "a"}]},
     "value"),
    ("override", "x", {"actions": [], "conditions": [
        {"kind": "event_property_contains", "key": "a", "value": [1]}]}, "value"),
    ("override", "x", {"actions": [], "conditions": [
        {"kind": "event_property_is", "key": "a", "value": 2**53}]}, "value"),
    ("override", "x", {"actions": [], "conditions": [
        {"kind": "event_property_is", "key": "a", "value": 1.5}]}, "value"),
    ("override", "x", {"actions": [], "conditions": [{"kind": "room_member_count",
                                                     "is": "~2"}]}, "is"),
    ("override", "x", {"actions": [], "conditions": [{"kind": "room_member_count"}]}, "is"),
    ("override", "x", {"actions": [], "conditions": [
        {"kind": "sender_notification_permission"}]}, "key"),
])
def test_validate_rule_rejects(kind: str, rule_id: str, body: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_rule(kind, rule_id, body)


# --------------------------------------------------------------------------- actions helpers


def test_action_helpers() -> None:
    assert actions_notify(["notify"]) and not actions_notify([]) and not actions_notify([HL])
    assert actions_highlight(["notify", HL])
    assert not actions_highlight(["notify", {"set_tweak": "highlight", "value": False}])
    assert not actions_highlight(["notify", SOUND])
    assert actions_tweaks(["notify", SOUND, HL, {"set_tweak": "x", "value": [1]}]) == {
        "sound": "default", "highlight": True, "x": [1]}

"""The redaction algorithm, from the keep lists of the v9 fragment (used by v10) and the v11
fragment (used by v11 and v12)."""

from __future__ import annotations

from typing import Any

import pytest

from veche.core.redaction import redact_event
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

V10, V11, V12 = (KNOWN_ROOM_VERSIONS[v] for v in ("10", "11", "12"))

TOP_LEVEL_V11 = {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
                 "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"}
TOP_LEVEL_V10 = TOP_LEVEL_V11 | {"prev_state", "origin", "membership"}


def event(etype: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"type": etype, "content": content, "sender": "@a:x", "room_id": "!r:x",
            "event_id": "$e", "origin_server_ts": 1, "depth": 3, "prev_events": ["$p"],
            "auth_events": ["$a"], "hashes": {"sha256": "h"}, "signatures": {"x": {}},
            "state_key": "", "unsigned": {"age": 1}, "origin": "x", "membership": "join",
            "prev_state": [], "redacts": "$r", "age_ts": 5, "extra_top_level": True}


@pytest.mark.parametrize("rv,kept", [(V10, TOP_LEVEL_V10), (V11, TOP_LEVEL_V11),
                                     (V12, TOP_LEVEL_V11)], ids=["v10", "v11", "v12"])
def test_top_level_keys(rv: RoomVersion, kept: set[str]) -> None:
    assert set(redact_event(event("m.room.message", {"body": "x"}), rv)) == kept


POWER_LEVELS = {"ban": 50, "events": {"m.x": 1}, "events_default": 0, "kick": 50, "redact": 50,
                "state_default": 50, "users": {"@a:x": 100}, "users_default": 0, "invite": 0,
                "notifications": {"room": 50}, "historical": 1}
PL_V10 = {"ban", "events", "events_default", "kick", "redact", "state_default", "users",
          "users_default"}

# (type, content, content keys kept in v10, content keys kept in v11 and v12)
CONTENT_TABLE: list[tuple[str, dict[str, Any], set[str], set[str]]] = [
    ("m.room.message", {"body": "secret", "msgtype": "m.text"}, set(), set()),
    ("m.room.member", {"membership": "join", "displayname": "A", "avatar_url": "mxc://x/y",
                       "join_authorised_via_users_server": "@b:x", "reason": "r"},
     {"membership", "join_authorised_via_users_server"},
     {"membership", "join_authorised_via_users_server"}),
    ("m.room.create", {"creator": "@a:x", "room_version": "10", "m.federate": True,
                       "predecessor": {"room_id": "!o:x"}, "additional_creators": ["@b:x"]},
     {"creator"}, {"creator", "room_version", "m.federate", "predecessor", "additional_creators"}),
    ("m.room.join_rules", {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}],
                           "other": 1},
     {"join_rule", "allow"}, {"join_rule", "allow"}),
    ("m.room.power_levels", POWER_LEVELS, PL_V10, PL_V10 | {"invite"}),
    ("m.room.history_visibility", {"history_visibility": "shared", "x": 1},
     {"history_visibility"}, {"history_visibility"}),
    ("m.room.redaction", {"redacts": "$x", "reason": "spam"}, set(), {"redacts"}),
    ("m.room.name", {"name": "secret"}, set(), set()),
    ("m.room.topic", {"topic": "secret"}, set(), set()),
    ("m.room.guest_access", {"guest_access": "can_join"}, set(), set()),
    ("m.room.third_party_invite", {"display_name": "d", "public_key": "k"}, set(), set()),
    ("m.room.aliases", {"aliases": ["#a:x"]}, set(), set()),
]


@pytest.mark.parametrize("etype,content,v10_keys,v11_keys", CONTENT_TABLE,
                         ids=[row[0] for row in CONTENT_TABLE])
def test_content_keys(etype: str, content: dict[str, Any], v10_keys: set[str],
                      v11_keys: set[str]) -> None:
    for rv, kept in ((V10, v10_keys), (V11, v11_keys), (V12, v11_keys)):
        redacted = redact_event(event(etype, content), rv)
        assert redacted["content"] == {k: content[k] for k in kept}, rv.identifier


SIGNED = {"mxid": "@c:x", "token": "t", "signatures": {"id": {"ed25519:0": "s"}}}


@pytest.mark.parametrize("third_party_invite,v11_kept", [
    ({"display_name": "c", "signed": SIGNED}, {"signed": SIGNED}),
    ({"display_name": "c"}, {}),
    ("not an object", None),
])
def test_member_third_party_invite(third_party_invite: Any, v11_kept: Any) -> None:
    content = {"membership": "invite", "third_party_invite": third_party_invite}
    assert redact_event(event("m.room.member", content), V10)["content"] == {"membership": "invite"}
    redacted = redact_event(event("m.room.member", content), V11)["content"]
    assert redacted.get("third_party_invite") == v11_kept
    assert redacted["membership"] == "invite"


def test_redaction_copies_and_leaves_the_original_alone() -> None:
    original = event("m.room.power_levels", POWER_LEVELS)
    redacted = redact_event(original, V11)
    redacted["content"]["users"]["@z:x"] = 1
    redacted["prev_events"].append("$q")
    assert original == event("m.room.power_levels", POWER_LEVELS)


def test_redaction_is_idempotent() -> None:
    for rv in (V10, V11, V12):
        for etype, content, _, _ in CONTENT_TABLE:
            once = redact_event(event(etype, content), rv)
            assert redact_event(once, rv) == once


def test_missing_or_malformed_content_becomes_empty() -> None:
    bare = {"type": "m.room.message", "sender": "@a:x"}
    assert redact_event(bare, V11) == {**bare, "content": {}}
    assert redact_event({**bare, "content": "junk"}, V10)["content"] == {}

"""The redaction algorithm: which content keys each event type keeps, per room version."""

from __future__ import annotations

from typing import Any

import pytest

from veche.core.events import compute_event_id
from veche.core.redaction import redact_event
from veche.core.room_versions import KNOWN_ROOM_VERSIONS

V10, V11, V12 = (KNOWN_ROOM_VERSIONS[v] for v in ("10", "11", "12"))


def event(etype: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": etype, "content": content, "sender": "@a:x", "room_id": "!r:x",
            "event_id": "$e", "origin_server_ts": 1, "depth": 3, "prev_events": [],
            "auth_events": [], "hashes": {"sha256": "h"}, "signatures": {}, "state_key": "",
            "unsigned": {"age": 1}, "origin": "x", "membership": "join", "prev_state": [],
            "extra_top_level": True, **extra}


# (type, content, kept keys in v10, kept keys in v11/v12)
TABLE = [
    ("m.room.message", {"body": "secret", "msgtype": "m.text"}, set(), set()),
    ("m.room.member", {"membership": "join", "displayname": "A",
                       "join_authorised_via_users_server": "@b:x"},
     {"membership", "join_authorised_via_users_server"}, {"membership", "join_authorised_via_users_server"}),
    ("m.room.create", {"creator": "@a:x", "room_version": "10", "m.federate": True},
     {"creator"}, {"creator", "room_version", "m.federate"}),
    ("m.room.join_rules", {"join_rule": "restricted", "allow": [], "other": 1},
     {"join_rule", "allow"}, {"join_rule", "allow"}),
    ("m.room.power_levels", {"ban": 50, "events": {}, "events_default": 0, "kick": 50, "redact": 50,
                             "state_default": 50, "users": {}, "users_default": 0, "invite": 0,
                             "notifications": {"room": 50}},
     {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"},
     {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default",
      "invite"}),
    ("m.room.history_visibility", {"history_visibility": "shared", "x": 1},
     {"history_visibility"}, {"history_visibility"}),
    ("m.room.redaction", {"redacts": "$t", "reason": "spam"}, set(), {"redacts"}),
    ("m.room.name", {"name": "Secret plans"}, set(), set()),
]


@pytest.mark.parametrize(("etype", "content", "keep10", "keep11"), TABLE, ids=[r[0] for r in TABLE])
def test_content_keys_kept(etype: str, content: dict[str, Any], keep10: set[str], keep11: set[str]) -> None:
    assert set(redact_event(event(etype, content), V10)["content"]) == keep10
    assert set(redact_event(event(etype, content), V11)["content"]) == keep11
    assert set(redact_event(event(etype, content), V12)["content"]) == keep11


def test_top_level_keys() -> None:
    kept10 = set(redact_event(event("m.room.message", {}), V10))
    kept11 = set(redact_event(event("m.room.message", {}), V11))
    assert {"origin", "membership", "prev_state"} <= kept10
    assert not {"origin", "membership", "prev_state", "unsigned", "extra_top_level"} & kept11
    assert {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
            "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"} <= kept11


def test_event_id_ignores_what_redaction_removes() -> None:
    base = event("m.room.message", {"body": "one"})
    assert compute_event_id(base, V11) == compute_event_id({**base, "content": {"body": "two"}}, V11)
    assert compute_event_id(base, V11) != compute_event_id({**base, "depth": 4}, V11)
    assert compute_event_id(base, V11).startswith("$") and len(compute_event_id(base, V11)) == 44

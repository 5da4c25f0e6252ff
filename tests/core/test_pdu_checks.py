"""Checks on received PDUs: format per room version, required signers, signatures with the
keys known at the event's time, content hash (a mismatch keeps the redacted copy), the form
sent out again; server ACL matching and server history visibility."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from signedjson.key import generate_signing_key, get_verify_key

from veche.core.events import compute_event_id, room_id_from_create_event_id, sign_event
from veche.core.federation_pdus import pdu_for_federation
from veche.core.pdu import (
    PduError,
    check_pdu_format,
    check_signatures,
    checked_content,
    required_signers,
    with_event_id,
)
from veche.core.room_versions import KNOWN_ROOM_VERSIONS
from veche.core.server_acl import host_of, is_ip_literal, server_allowed
from veche.core.server_visibility import for_server, server_may_see, visibility_of

V10, V11, V12 = (KNOWN_ROOM_VERSIONS[v] for v in ("10", "11", "12"))
KEY = generate_signing_key("a1")
OTHER = generate_signing_key("a1")
HASH_ID = "$" + "A" * 43
V12_ROOM = "!" + "B" * 43


def _event(rv: Any, **over: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "m.room.message", "sender": "@alice:a.test", "content": {"body": "hi"},
        "room_id": V12_ROOM if rv.room_id_is_create_event_hash else "!room:a.test",
        "origin_server_ts": 1_700_000_000_000, "depth": 5,
        "prev_events": [HASH_ID], "auth_events": [HASH_ID],
    }
    event.update(over)
    return {k: v for k, v in event.items() if v is not None}


def _signed(rv: Any, **over: Any) -> dict[str, Any]:
    return sign_event(_event(rv, **over), "a.test", KEY, rv)


@pytest.mark.parametrize("rv", [V10, V11, V12], ids=lambda rv: rv.identifier)
@pytest.mark.parametrize(("what", "over", "ok"), [
    ("a good event", {}, True),
    ("no type", {"type": None}, False),
    ("content not an object", {"content": "x"}, False),
    ("sender not a user ID", {"sender": "alice"}, False),
    ("float timestamp", {"origin_server_ts": 1.5}, False),
    ("negative depth", {"depth": -1}, False),
    ("depth past 2**53", {"depth": 2**53}, False),
    ("boolean depth", {"depth": True}, False),
    ("state_key not a string", {"state_key": 3}, False),
    ("21 prev events", {"prev_events": [HASH_ID] * 21}, False),
    ("11 auth events", {"auth_events": [HASH_ID] * 11}, False),
    ("a v1-style event ID", {"prev_events": ["$abc:a.test"]}, False),
    ("prev_events missing", {"prev_events": None}, False),
    ("a float in content", {"content": {"n": 1.5}}, False),
    ("content too big", {"content": {"body": "x" * 70_000}}, False),
    ("no room_id", {"room_id": None}, False),
])
def test_pdu_format(rv: Any, what: str, over: dict[str, Any], ok: bool) -> None:
    pdu = _signed(rv, **over)
    if ok:
        check_pdu_format(rv, pdu)
    else:
        with pytest.raises(PduError):
            check_pdu_format(rv, pdu)


def test_room_id_format_per_version() -> None:
    # v12 room IDs are hashes; older rooms' IDs have a domain; neither passes for the other.
    with pytest.raises(PduError):
        check_pdu_format(V12, _signed(V12, room_id="!room:a.test"))
    with pytest.raises(PduError):
        check_pdu_format(V11, _signed(V11, room_id=V12_ROOM))
    create = _signed(V12, type="m.room.create", state_key="", room_id=None, prev_events=[],
                     auth_events=[], content={"room_version": "12"})
    check_pdu_format(V12, create)
    with pytest.raises(PduError):
        check_pdu_format(V12, {**create, "room_id": V12_ROOM})
    # The stored copy carries the room ID the create event defines; sent out, it has none.
    stored = with_event_id(V12, create)
    assert stored["room_id"] == room_id_from_create_event_id(stored["event_id"])
    assert pdu_for_federation(stored, V12) == create


def test_backfilled_events_may_exceed_the_count_limits() -> None:
    pdu = _signed(V11, prev_events=[HASH_ID] * 30)
    check_pdu_format(V11, pdu, limits=False)


def test_event_id_ignores_a_claimed_one() -> None:
    pdu = _signed(V11)
    event = with_event_id(V11, {**pdu, "event_id": "$forged"})
    assert event["event_id"] == compute_event_id(pdu, V11)
    assert pdu_for_federation({**event, "unsigned": {"prev_content": {}}}, V11) == pdu


@pytest.mark.parametrize(("over", "signers"), [
    ({}, {"a.test"}),
    ({"type": "m.room.member", "state_key": "@bob:b.test",
      "content": {"membership": "join", "join_authorised_via_users_server": "@carol:c.test"}},
     {"a.test", "c.test"}),
    ({"type": "m.room.member", "state_key": "@bob:b.test",
      "content": {"membership": "invite", "third_party_invite": {"signed": {}}}}, set()),
])
def test_required_signers(over: dict[str, Any], signers: set[str]) -> None:
    assert required_signers(V11, _event(V11, **over)) == signers


def test_signatures() -> None:
    key = get_verify_key(KEY)
    known = {("a.test", "ed25519:a1"): key}
    event = _signed(V11)
    check_signatures(V11, event, known)
    # Still valid on the redacted copy (the signature covers the redacted event).
    redacted, _ = checked_content(V11, {**event, "content": {"body": "changed"}})
    check_signatures(V11, redacted, known)
    cases = [
        ("no key known", event, {}),
        ("another key's signature", sign_event(_event(V11), "a.test", OTHER, V11), known),
        ("signed by another server only", sign_event(_event(V11), "b.test", KEY, V11),
         {("b.test", "ed25519:a1"): key}),
        ("changed after signing", {**event, "sender": "@mallory:a.test"}, known),
    ]
    for what, bad, keys in cases:
        with pytest.raises(PduError):
            check_signatures(V11, bad, keys)
            pytest.fail(what)
    # An unknown extra key is skipped; a known bad one is not.
    extra = copy.deepcopy(event)
    extra["signatures"]["a.test"]["ed25519:zz"] = "AAAA"
    check_signatures(V11, extra, known)
    with pytest.raises(PduError):
        check_signatures(V11, extra, {**known, ("a.test", "ed25519:zz"): key})


@pytest.mark.parametrize("rv", [V10, V11, V12], ids=lambda rv: rv.identifier)
def test_content_hash_mismatch_keeps_the_redacted_copy(rv: Any) -> None:
    event = _signed(rv)
    same, ok = checked_content(rv, event)
    assert ok and same is event
    tampered = {**event, "content": {"body": "not what was signed"}}
    kept, ok = checked_content(rv, tampered)
    assert not ok and kept["content"] == {}
    # The redacted copy has the same event ID (the reference hash covers the redacted form).
    assert compute_event_id(kept, rv) == compute_event_id(event, rv)


@pytest.mark.parametrize(("server", "acl", "allowed"), [
    ("evil.com", None, True),
    ("evil.com", {}, False),  # no allow list: nobody
    ("good.org", {"allow": ["*"]}, True),
    ("evil.com", {"allow": ["*"], "deny": ["evil.com"]}, False),
    ("evil.com:8448", {"allow": ["*"], "deny": ["evil.com"]}, False),  # ports never count
    ("EVIL.com", {"allow": ["*"], "deny": ["evil.COM"]}, False),  # case-insensitive
    ("sub.evil.com", {"allow": ["*"], "deny": ["*.evil.com"]}, False),
    ("evil.com", {"allow": ["*"], "deny": ["*.evil.com"]}, True),
    ("evil.co", {"allow": ["*"], "deny": ["evil.c?"]}, False),
    ("evil.com", {"allow": ["*"], "deny": ["evil.c?"]}, True),
    ("a.good.org", {"allow": ["*.good.org"]}, True),
    ("bad.org", {"allow": ["*.good.org"]}, False),
    ("1.2.3.4", {"allow": ["*"], "allow_ip_literals": False}, False),
    ("[::1]:8448", {"allow": ["*"], "allow_ip_literals": False}, False),
    ("1.2.3.4", {"allow": ["*"], "allow_ip_literals": "no"}, True),  # not a boolean: true
    ("1.2.3.4", {"allow": ["*"]}, True),
    ("x.org", {"allow": "*"}, False),  # not a list: empty
    ("x.org", {"allow": [3, "x.org"]}, True),
    ("a.b", {"allow": ["a.b"], "deny": ["a[.]b"]}, True),  # no regex syntax
    ("a\nb", {"allow": ["a*b"]}, True),
])
def test_server_acl(server: str, acl: dict[str, Any] | None, allowed: bool) -> None:
    assert server_allowed(server, acl) is allowed


def test_acl_host_helpers() -> None:
    assert host_of("[::1]:80") == "[::1]" and host_of("a.b:80") == "a.b" and host_of("a.b") == "a.b"
    assert is_ip_literal("[::1]") and is_ip_literal("10.0.0.1") and not is_ip_literal("a.b")


@pytest.mark.parametrize(("visibility", "memberships", "visible"), [
    ("world_readable", [], True),
    ("shared", [], True),
    ("shared", ["leave"], True),
    ("invited", ["invite"], True),
    ("invited", ["leave", "join"], True),
    ("invited", ["leave"], False),
    ("joined", ["invite"], False),
    ("joined", ["join"], True),
    ("joined", [], False),
])
def test_server_visibility(visibility: str, memberships: list[str], visible: bool) -> None:
    assert server_may_see(visibility, memberships) is visible


def test_visibility_setting_and_redaction() -> None:
    assert visibility_of(None) == "shared"
    assert visibility_of({"content": {"history_visibility": "bogus"}}) == "shared"
    assert visibility_of({"content": {"history_visibility": "joined"}}) == "joined"
    event = with_event_id(V11, _signed(V11))
    assert for_server(V11, event, True) is event
    hidden = for_server(V11, {**event, "unsigned": {"x": 1}}, False)
    assert hidden["content"] == {} and "unsigned" not in hidden

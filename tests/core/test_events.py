"""Event hashing, IDs, signing and size limits.

Signing is checked against the appendices' "Cryptographic Test Vectors" (those events predate
v11 redaction, which drops `origin`, so they are signed with the v10 algorithm). The spec gives
no event ID vector for v4+ events, so IDs are checked by their defining properties.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from canonicaljson import encode_canonical_json
from signedjson.key import decode_signing_key_base64, get_verify_key
from signedjson.sign import sign_json
from unpaddedbase64 import decode_base64, encode_base64

from veche.core.events import (
    EventFormatError,
    canonical_json,
    check_canonical_json,
    check_content_hash,
    check_event_size_limits,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    create_event_id_from_room_id,
    room_id_from_create_event_id,
    sign_event,
    verify_event_signature,
)
from veche.core.identifiers import is_valid_event_id, is_valid_room_id
from veche.core.redaction import redact_event
from veche.core.room_versions import KNOWN_ROOM_VERSIONS

V10, V11, V12 = (KNOWN_ROOM_VERSIONS[v] for v in ("10", "11", "12"))
KEY = decode_signing_key_base64("ed25519", "1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")

MINIMAL_EVENT: dict[str, Any] = {
    "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
    "origin_server_ts": 1000000, "signatures": {}, "hashes": {}, "type": "X", "content": {},
    "prev_events": [], "auth_events": [], "depth": 3, "unsigned": {"age_ts": 1000000},
}
MINIMAL_SIGNED = {
    **MINIMAL_EVENT,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "signatures": {"domain": {"ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYq"
                                           "fIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},
}
REDACTABLE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"}, "event_id": "$0:domain",
    "origin": "domain", "origin_server_ts": 1000000, "type": "m.room.message",
    "room_id": "!r:domain", "sender": "@u:domain", "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
REDACTABLE_SIGNED = {
    **REDACTABLE_EVENT,
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "signatures": {"domain": {"ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78Fun"
                                           "oD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"}},
}


@pytest.mark.parametrize("obj,signature", [
    ({}, "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"),
    ({"one": 1, "two": "Two"},
     "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"),
])
def test_json_signing_vectors(obj: dict[str, Any], signature: str) -> None:
    """The test key itself, checked against the appendices' JSON signing vectors."""
    assert sign_json(dict(obj), "domain", KEY)["signatures"] == {"domain": {"ed25519:1": signature}}


@pytest.mark.parametrize("unsigned,expected", [(MINIMAL_EVENT, MINIMAL_SIGNED),
                                               (REDACTABLE_EVENT, REDACTABLE_SIGNED)],
                         ids=["minimal", "redactable"])
def test_event_signing_vectors(unsigned: dict[str, Any], expected: dict[str, Any]) -> None:
    assert sign_event(unsigned, "domain", KEY, V10) == expected
    assert sign_event(unsigned, "domain", "1", KEY, room_version=V10) == expected
    assert compute_content_hash(unsigned) == expected["hashes"]["sha256"]
    assert verify_event_signature(expected, "domain", get_verify_key(KEY), V10)


def test_sign_event_does_not_mutate_and_keeps_other_signatures() -> None:
    event = {**MINIMAL_EVENT, "signatures": {"other": {"ed25519:x": "sig"}}}
    before = encode_canonical_json(event)
    signed = sign_event(event, "domain", KEY, V11)
    assert encode_canonical_json(event) == before
    assert set(signed["signatures"]) == {"other", "domain"}


def test_signature_survives_redaction_and_not_tampering() -> None:
    verify_key = get_verify_key(KEY)
    for rv in (V10, V11, V12):
        signed = sign_event(REDACTABLE_EVENT, "domain", KEY, rv)
        assert verify_event_signature(redact_event(signed, rv), "domain", verify_key, rv)
        assert verify_event_signature({**signed, "content": {"body": "edited"}}, "domain",
                                      verify_key, rv)  # content is only covered by the hash
        assert not check_content_hash({**signed, "content": {"body": "edited"}})
        assert check_content_hash(signed)
        assert not verify_event_signature({**signed, "sender": "@v:domain"}, "domain",
                                          verify_key, rv)
        assert not verify_event_signature(signed, "elsewhere", verify_key, rv)
        assert not verify_event_signature(signed, "domain", verify_key, rv, key_id="ed25519:2")


def test_v11_signature_does_not_cover_origin() -> None:
    signed = sign_event(MINIMAL_EVENT, "domain", KEY, V11)
    verify_key = get_verify_key(KEY)
    assert verify_event_signature({**signed, "origin": "evil"}, "domain", verify_key, V11)
    assert not verify_event_signature({**signed, "origin": "evil"}, "domain", verify_key, V10)


def test_content_hash_ignores_unsigned_signatures_and_hashes() -> None:
    base = compute_content_hash(MINIMAL_EVENT)
    assert compute_content_hash({**MINIMAL_EVENT, "unsigned": {"age": 9}}) == base
    assert compute_content_hash({**MINIMAL_EVENT, "signatures": {"s": {}}}) == base
    assert compute_content_hash({**MINIMAL_EVENT, "hashes": {"sha256": "z"}}) == base
    assert compute_content_hash({**MINIMAL_EVENT, "content": {"a": 1}}) != base
    stripped = {k: v for k, v in MINIMAL_EVENT.items()
                if k not in ("unsigned", "signatures", "hashes")}
    assert decode_base64(base) == hashlib.sha256(encode_canonical_json(stripped)).digest()


PDU: dict[str, Any] = {
    "type": "m.room.message", "room_id": "!r:a.test", "sender": "@u:a.test",
    "content": {"body": "hi"}, "origin_server_ts": 5, "depth": 4, "prev_events": ["$p"],
    "auth_events": ["$a"], "hashes": {"sha256": "h"},
}


def test_reference_hash_is_sha256_of_the_redacted_event() -> None:
    for rv in (V10, V11, V12):
        redacted = redact_event(PDU, rv)
        assert compute_reference_hash(PDU, rv) == hashlib.sha256(
            encode_canonical_json(redacted)).digest()


@pytest.mark.parametrize("rv", [V10, V11, V12], ids=lambda rv: f"v{rv.identifier}")
def test_event_id_properties(rv: Any) -> None:
    event_id = compute_event_id(PDU, rv)
    assert is_valid_event_id(event_id, rv)
    assert event_id == "$" + encode_base64(compute_reference_hash(PDU, rv), urlsafe=True)
    # Unchanged by what redaction or the reference hash drop...
    same = [{**PDU, "unsigned": {"age": 1}}, {**PDU, "signatures": {"a.test": {"k": "s"}}},
            {**PDU, "event_id": "$whatever"}, {**PDU, "age_ts": 9},
            {**PDU, "content": {"body": "redacted away"}}]
    assert all(compute_event_id(e, rv) == event_id for e in same)
    # ...changed by what it keeps, hashes included (so content changes do change it).
    different = [{**PDU, "hashes": {"sha256": compute_content_hash(PDU)}},
                 {**PDU, "depth": 5}, {**PDU, "prev_events": ["$q"]}, {**PDU, "type": "m.x"}]
    assert all(compute_event_id(e, rv) != event_id for e in different)


def test_event_id_depends_on_the_redaction_algorithm() -> None:
    pdu = {**PDU, "origin": "a.test"}
    assert compute_event_id(pdu, V10) != compute_event_id(pdu, V11)
    assert compute_event_id(pdu, V11) == compute_event_id(pdu, V12)


def test_v12_room_id_from_create_event() -> None:
    create = {"type": "m.room.create", "state_key": "", "sender": "@u:a.test",
              "content": {"room_version": "12"}, "origin_server_ts": 1, "depth": 1,
              "prev_events": [], "auth_events": []}
    signed = sign_event(create, "a.test", KEY, V12)
    event_id = compute_event_id(signed, V12)
    room_id = room_id_from_create_event_id(event_id)
    assert room_id == "!" + event_id[1:]
    assert is_valid_room_id(room_id, V12) and not is_valid_room_id(room_id, V11)
    assert create_event_id_from_room_id(room_id) == event_id
    with pytest.raises(EventFormatError):
        room_id_from_create_event_id("!notanevent")
    with pytest.raises(EventFormatError):
        create_event_id_from_room_id("!r:a.test")


@pytest.mark.parametrize("overrides,ok", [
    ({}, True),
    ({"content": {"body": "x" * 65000}}, True),
    ({"content": {"body": "x" * 65536}}, False),
    ({"sender": "@" + "u" * 248 + ":a.test"}, False),
    ({"sender": "@" + "u" * 247 + ":a.test"}, True),
    ({"room_id": "!" + "r" * 250 + ":a.test"}, False),
    ({"state_key": "s" * 255}, True),
    ({"state_key": "s" * 256}, False),
    ({"state_key": "é" * 128}, False),  # bytes, not characters
    ({"type": "t" * 256}, False),
    ({"event_id": "$" + "e" * 255}, False),
])
def test_size_limits(overrides: dict[str, Any], ok: bool) -> None:
    event = {**PDU, **overrides}
    if ok:
        check_event_size_limits(event)
    else:
        with pytest.raises(EventFormatError):
            check_event_size_limits(event)


@pytest.mark.parametrize("fill", ["x", "é", "😀", "\n", "\x01", "\u2028", '"', "/"])
def test_size_limit_is_on_canonical_json(fill: str) -> None:
    """Counted as canonical JSON writes it: UTF-8, its escapes (2 bytes for a newline, 6 for
    another control character), and not the escapes some other encoder might use."""
    event = {**PDU, "content": {}}
    room = 65536 - len(canonical_json(event)) - len('"body":""')
    width = len(canonical_json(fill)) - 2
    body = fill * (room // width) + "x" * (room % width)
    at_limit = {**PDU, "content": {"body": body}}
    assert len(canonical_json(at_limit)) == 65536
    check_event_size_limits(at_limit)
    with pytest.raises(EventFormatError):
        check_event_size_limits({**PDU, "content": {"body": body + "x"}})


@pytest.mark.parametrize("value,ok", [
    (0, True), (2**53 - 1, True), (-(2**53) + 1, True), (2**53, False), (-(2**53), False),
    (1.0, False), (1.5, False), ({"a": [1, {"b": 2.5}]}, False), ({"a": [True, None, "s"]}, True),
])
def test_canonical_json_values(value: Any, ok: bool) -> None:
    if ok:
        check_canonical_json({"content": value})
    else:
        with pytest.raises(EventFormatError):
            check_canonical_json({"content": value})

"""Server key responses: ours is self-signed and lists old keys; another server's is accepted
only when it is for that server and signed by each of its keys; validity is capped at 7 days."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import verify_signed_json

from veche.core.server_keys import (
    MAX_KEY_VALIDITY_MS,
    KeyResponseError,
    countersign,
    own_keys_response,
    parse_keys_response,
)

NOW = 1_700_000_000_000
KEY = generate_signing_key("new")
OLD = generate_signing_key("old")
OLD_KEYS = {"ed25519:old": {"key": encode_verify_key_base64(get_verify_key(OLD)), "expired_ts": NOW - 5}}


def response(valid_until: int = NOW + 3600_000) -> dict[str, Any]:
    return own_keys_response("a.org", KEY, OLD_KEYS, valid_until)


def test_own_response_is_self_signed_with_old_keys() -> None:
    body = response()
    verify_signed_json(body, "a.org", get_verify_key(KEY))
    assert body["verify_keys"] == {"ed25519:new": {"key": encode_verify_key_base64(get_verify_key(KEY))}}
    assert body["old_verify_keys"] == OLD_KEYS
    keys = parse_keys_response(body, "a.org", NOW)
    assert set(keys.verify_keys) == {"ed25519:new"}
    assert keys.old_verify_keys["ed25519:old"][1] == NOW - 5
    assert keys.valid_until_ts == NOW + 3600_000


def test_validity_is_capped_at_seven_days() -> None:
    keys = parse_keys_response(response(NOW + 30 * MAX_KEY_VALIDITY_MS), "a.org", NOW)
    assert keys.valid_until_ts == NOW + MAX_KEY_VALIDITY_MS


def test_countersigned_response_still_verifies_for_both() -> None:
    notary = generate_signing_key("n")
    body = countersign(response(), "notary.org", notary)
    verify_signed_json(body, "notary.org", get_verify_key(notary))
    parse_keys_response(body, "a.org", NOW)


def _tampered(change: str) -> dict[str, Any]:
    body = copy.deepcopy(response())
    if change == "other server":
        return own_keys_response("b.org", KEY, {}, NOW + 1000)
    if change == "changed after signing":
        body["valid_until_ts"] += 1
    elif change == "unsigned":
        del body["signatures"]
    elif change == "signed by another key":
        body = own_keys_response("a.org", KEY, {}, NOW + 1000)
        body["verify_keys"]["ed25519:new"]["key"] = encode_verify_key_base64(get_verify_key(OLD))
    elif change == "no key":
        body["verify_keys"] = {}
    elif change == "bad base64":
        body["verify_keys"]["ed25519:new"]["key"] = "!!"
    elif change == "no valid_until_ts":
        del body["valid_until_ts"]
    elif change == "key not signing":
        extra = generate_signing_key("extra")
        body = own_keys_response("a.org", KEY, {}, NOW + 1000)
        body["verify_keys"]["ed25519:extra"] = {"key": encode_verify_key_base64(get_verify_key(extra))}
    return body


@pytest.mark.parametrize("change", [
    "other server", "changed after signing", "unsigned", "signed by another key", "no key",
    "bad base64", "no valid_until_ts", "key not signing",
])
def test_bad_responses_are_refused(change: str) -> None:
    with pytest.raises(KeyResponseError):
        parse_keys_response(_tampered(change), "a.org", NOW)

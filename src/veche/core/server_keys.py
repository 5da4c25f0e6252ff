"""Server signing keys as published at /_matrix/key/v2/server (server-server API "Retrieving
server keys"): building our own response and checking another server's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from signedjson.key import decode_verify_key_bytes, encode_verify_key_base64, get_verify_key
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64

# Servers MUST use the lesser of valid_until_ts and this far into the future.
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000
KEY_ID = re.compile(r"ed25519:[a-zA-Z0-9_]+")


class KeyResponseError(ValueError):
    """A key response is malformed, for another server, or not signed by its keys."""


@dataclass
class ServerKeys:
    """A checked key response: which keys verify what, and until when."""

    server_name: str
    valid_until_ts: int  # already capped at fetch time + MAX_KEY_VALIDITY_MS
    verify_keys: dict[str, VerifyKey] = field(default_factory=dict)
    # Old keys and when they expired: they verify only what was signed before that.
    old_verify_keys: dict[str, tuple[VerifyKey, int]] = field(default_factory=dict)


def key_id_of(key: SigningKey | VerifyKey) -> str:
    return f"{key.alg}:{key.version}"


def own_keys_response(server_name: str, signing_key: SigningKey,
                      old_verify_keys: dict[str, dict[str, Any]], valid_until_ts: int) -> dict[str, Any]:
    """Our /_matrix/key/v2/server body, signed with our key."""
    body: dict[str, Any] = {
        "server_name": server_name,
        "verify_keys": {key_id_of(signing_key): {
            "key": encode_verify_key_base64(get_verify_key(signing_key))}},
        "old_verify_keys": old_verify_keys,
        "valid_until_ts": valid_until_ts,
    }
    return sign_json(body, server_name, signing_key)


def countersign(response: dict[str, Any], server_name: str, signing_key: SigningKey) -> dict[str, Any]:
    """A notary's copy of another server's key response, signed by the notary as well."""
    return sign_json(dict(response), server_name, signing_key)


def decode_key(key_id: str, key_b64: Any) -> VerifyKey:
    if not KEY_ID.fullmatch(key_id):
        raise KeyResponseError(f"unsupported key ID {key_id!r}")
    if not isinstance(key_b64, str):
        raise KeyResponseError(f"key {key_id} is not a string")
    try:
        return decode_verify_key_bytes(key_id, decode_base64(key_b64))
    except Exception:
        raise KeyResponseError(f"key {key_id} is not an ed25519 key in base64") from None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KeyResponseError(f"{what} is not an integer")
    return value


def parse_keys_response(response: Any, server_name: str, now_ms: int) -> ServerKeys:
    """Check a key response for `server_name` and that each of its current keys signed it."""
    if not isinstance(response, dict):
        raise KeyResponseError("not a JSON object")
    if response.get("server_name") != server_name:
        raise KeyResponseError(f"keys are for {response.get('server_name')!r}, not {server_name}")
    valid_until = _int(response.get("valid_until_ts"), "valid_until_ts")
    verify_keys = response.get("verify_keys")
    old_keys = response.get("old_verify_keys", {})
    if not isinstance(verify_keys, dict) or not isinstance(old_keys, dict):
        raise KeyResponseError("verify_keys and old_verify_keys must be objects")
    keys = ServerKeys(server_name, min(valid_until, now_ms + MAX_KEY_VALIDITY_MS))
    for key_id, entry in verify_keys.items():
        if not key_id.startswith("ed25519:"):
            continue  # an algorithm we do not know: ignored, not fatal
        if not isinstance(entry, dict):
            raise KeyResponseError(f"verify key {key_id} is not an object")
        keys.verify_keys[key_id] = decode_key(key_id, entry.get("key"))
    for key_id, entry in old_keys.items():
        if not key_id.startswith("ed25519:"):
            continue
        if not isinstance(entry, dict):
            raise KeyResponseError(f"old verify key {key_id} is not an object")
        keys.old_verify_keys[key_id] = (decode_key(key_id, entry.get("key")),
                                        _int(entry.get("expired_ts"), f"{key_id} expired_ts"))
    if not keys.verify_keys:
        raise KeyResponseError("no ed25519 verify key")
    signatures = response.get("signatures")
    if not isinstance(signatures, dict) or not isinstance(signatures.get(server_name), dict):
        raise KeyResponseError(f"not signed by {server_name}")
    for key_id, key in keys.verify_keys.items():
        if not verify_json(response, server_name, key):
            raise KeyResponseError(f"not signed by {server_name}'s key {key_id}")
    return keys


def verify_json(obj: dict[str, Any], server_name: str, key: VerifyKey) -> bool:
    """Whether `obj` carries a valid signature of `server_name` with `key`."""
    try:
        verify_signed_json(obj, server_name, key)
    except SignatureVerifyException:
        return False
    return True

"""Event format helpers: canonical JSON, content and reference hashes, event IDs, signing."""

from __future__ import annotations

import hashlib
from typing import Any

from canonicaljson import encode_canonical_json
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from unpaddedbase64 import decode_base64, encode_base64

from veche.core.redaction import redact_event
from veche.core.room_versions import RoomVersion


class EventFormatError(ValueError):
    pass


def canonical_json(obj: Any) -> bytes:
    return encode_canonical_json(obj)


def compute_content_hash(event: dict[str, Any]) -> str:
    stripped = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
    return encode_base64(hashlib.sha256(canonical_json(stripped)).digest())


def compute_reference_hash(event: dict[str, Any], room_version: RoomVersion) -> bytes:
    redacted = redact_event(event, room_version)
    for key in ("signatures", "unsigned", "age_ts", "event_id"):
        redacted.pop(key, None)
    return hashlib.sha256(canonical_json(redacted)).digest()


def compute_event_id(event: dict[str, Any], room_version: RoomVersion) -> str:
    return "$" + encode_base64(compute_reference_hash(event, room_version), urlsafe=True)


def room_id_from_create_event_id(event_id: str) -> str:
    return "!" + event_id[1:]


def sign_event(
    event: dict[str, Any], server_name: str, signing_key: Any, room_version: RoomVersion | None = None
) -> dict[str, Any]:
    """Add hashes.sha256 and this server's signature over the redacted event."""
    from veche.core.room_versions import KNOWN_ROOM_VERSIONS

    rv = room_version or KNOWN_ROOM_VERSIONS["11"]
    out = {k: v for k, v in event.items() if k not in ("event_id", "unsigned")}
    out["hashes"] = {"sha256": compute_content_hash(out)}
    redacted = redact_event(out, rv)
    redacted.pop("signatures", None)
    signed = sign_json(redacted, server_name, signing_key)
    out["signatures"] = signed["signatures"]
    if "unsigned" in event:
        out["unsigned"] = event["unsigned"]
    return out


def verify_event_signature(
    event: dict[str, Any], server_name: str, verify_key: Any, room_version: RoomVersion
) -> bool:
    redacted = redact_event(event, room_version)
    redacted.pop("unsigned", None)
    try:
        verify_signed_json(redacted, server_name, verify_key)
    except SignatureVerifyException:
        return False
    return True


_ID_FIELDS = ("sender", "room_id", "state_key", "type", "event_id")


def check_event_size_limits(event: dict[str, Any]) -> None:
    if len(canonical_json(event)) > 65536:
        raise EventFormatError("event is larger than 65536 bytes")
    for field in _ID_FIELDS:
        value = event.get(field)
        if isinstance(value, str) and len(value.encode()) > 255:
            raise EventFormatError(f"{field} is longer than 255 bytes")


__all__ = ["decode_base64"]


# Content keys whose type the spec fixes for state events that clients render or auth reads.
_STRING_CONTENT = {
    "m.room.name": ("name",),
    "m.room.topic": ("topic",),
    "m.room.join_rules": ("join_rule",),
    "m.room.history_visibility": ("history_visibility",),
    "m.room.guest_access": ("guest_access",),
    "m.room.member": ("membership", "displayname", "avatar_url", "reason"),
    "m.room.canonical_alias": ("alias",),
    "m.room.avatar": ("url",),
}


def validate_content(event_type: str, content: dict[str, Any]) -> None:
    """Reject content of well-known types whose fields have the wrong type."""
    for key in _STRING_CONTENT.get(event_type, ()):
        value = content.get(key)
        if value is not None and not isinstance(value, str):
            raise EventFormatError(f"{event_type} content.{key} must be a string")

"""Event (PDU) format helpers: canonical JSON, content and reference hashes, event IDs,
signing and signature checks, size limits.

Events are plain dicts in the federation (PDU) format of their room version. For the room
versions served here (v4+ format) a PDU carries no `event_id`; local copies that do are still
hashed correctly because the reference hash ignores it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, overload

import orjson
from canonicaljson import encode_canonical_json
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

from veche.core.redaction import redacted_view
from veche.core.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS, RoomVersion

MAX_EVENT_BYTES = 65536
MAX_KEY_BYTES = 255
CANONICAL_INT_MAX = 2**53 - 1
_SIZE_LIMITED_KEYS = ("sender", "room_id", "state_key", "type", "event_id")


class EventFormatError(ValueError):
    """The event breaks the event format; the message gives the reason."""


def canonical_json(obj: object) -> bytes:
    return encode_canonical_json(obj)


def check_canonical_json(obj: object, path: str = "event") -> None:
    """Canonical JSON (v6+) admits only integers within +-(2**53 - 1): no floats at all."""
    if _plainly_canonical(obj):
        return
    _check_canonical_json(obj, path)


def _plainly_canonical(obj: object) -> bool:
    """Whether `obj`, made of plain JSON types (as parsed), is canonical JSON: the common
    case, checked without building the path of every value for an error message."""
    stack: list[Any] = [obj]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
        elif kind is int:
            if not -CANONICAL_INT_MAX <= node <= CANONICAL_INT_MAX:
                return False
        elif not (kind is str or kind is bool or node is None):
            return False  # a float, or some other type: the full check says what
    return True


def _check_canonical_json(obj: object, path: str) -> None:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, int):
        if not -CANONICAL_INT_MAX <= obj <= CANONICAL_INT_MAX:
            raise EventFormatError(f"{path} is outside the canonical JSON integer range")
    elif isinstance(obj, float):
        raise EventFormatError(f"{path} is not an integer")
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _check_canonical_json(value, f"{path}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_canonical_json(value, f"{path}[{i}]")
    else:
        raise EventFormatError(f"{path} is not a JSON value")


def compute_content_hash(event: Mapping[str, Any]) -> str:
    """The unpadded base64 sha256 of the event minus unsigned, signatures and hashes."""
    stripped = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
    return encode_base64(hashlib.sha256(canonical_json(stripped)).digest())


def check_content_hash(event: Mapping[str, Any]) -> bool:
    """True if `hashes.sha256` matches; a mismatch means the caller must use the redacted form."""
    hashes = event.get("hashes")
    return isinstance(hashes, Mapping) and hashes.get("sha256") == compute_content_hash(event)


def reference_input(event: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """What the reference hash hashes. For a PDU without `event_id` (and not a v12 create
    event, whose room_id the PDU lacks) it is also what its signatures sign."""
    redacted = redacted_view(event, room_version)
    # `age_ts` predates `unsigned`; `event_id` is not part of the v4+ PDU it identifies.
    for key in ("signatures", "unsigned", "age_ts", "event_id"):
        redacted.pop(key, None)
    return canonical_json(redacted)


def compute_reference_hash(event: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    return hashlib.sha256(reference_input(event, room_version)).digest()


def event_id_of_reference_input(signed: bytes) -> str:
    return "$" + encode_base64(hashlib.sha256(signed).digest(), urlsafe=True)


def compute_event_id(event: Mapping[str, Any], room_version: RoomVersion) -> str:
    return event_id_of_reference_input(reference_input(event, room_version))


def room_id_from_create_event_id(event_id: str) -> str:
    """v12: the room ID is the create event's ID with `!` for `$`."""
    if not event_id.startswith("$"):
        raise EventFormatError(f"not an event ID: {event_id!r}")
    return "!" + event_id[1:]


def create_event_id_from_room_id(room_id: str) -> str:
    """v12: the inverse of room_id_from_create_event_id."""
    if not room_id.startswith("!") or ":" in room_id:
        raise EventFormatError(f"not a v12 room ID: {room_id!r}")
    return "$" + room_id[1:]


def _signing_input(obj: Mapping[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def signing_input(event: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """The bytes an event's signatures sign: its redacted form as canonical JSON."""
    return _signing_input(redacted_view(event, room_version))


@overload
def sign_event(
    event: Mapping[str, Any], server_name: str, signing_key: SigningKey, /, *,
    room_version: RoomVersion | None = None,
) -> dict[str, Any]: ...
@overload
def sign_event(
    event: Mapping[str, Any], server_name: str, signing_key: SigningKey,
    room_version: RoomVersion | None, /,
) -> dict[str, Any]: ...
@overload
def sign_event(
    event: Mapping[str, Any], server_name: str, signing_key_id_version: str,
    signing_key: SigningKey, /, room_version: RoomVersion | None = None,
) -> dict[str, Any]: ...
def sign_event(
    event: Mapping[str, Any], server_name: str, key_or_version: SigningKey | str,
    key_or_room_version: SigningKey | RoomVersion | None = None, /,
    room_version: RoomVersion | None = None,
) -> dict[str, Any]:
    """Return a copy of `event` with `hashes.sha256` set and this server's signature added.

    The signature covers the *redacted* event, so it survives redaction. Call either as
    `sign_event(event, server, "a_bcd", nacl_key, rv)` or, with a signedjson key that carries
    its own `version`, `sign_event(event, server, key, rv)`. `room_version` picks the redaction
    algorithm (default: the default room version; v11 and v12 redact alike).
    """
    if isinstance(key_or_version, str):
        if not isinstance(key_or_room_version, SigningKey):
            raise TypeError("sign_event(event, server, version, key): key must be a SigningKey")
        version, key = key_or_version, key_or_room_version
    else:
        key = key_or_version
        version = str(getattr(key, "version"))  # noqa: B009 - signedjson adds it dynamically
        if isinstance(key_or_room_version, RoomVersion):
            room_version = key_or_room_version
    rv = room_version or KNOWN_ROOM_VERSIONS[DEFAULT_ROOM_VERSION]
    signed = dict(event)
    signed["hashes"] = {"sha256": compute_content_hash(signed)}
    signature = key.sign(_signing_input(redacted_view(signed, rv))).signature
    signatures = {name: dict(sigs) for name, sigs in dict(signed.get("signatures") or {}).items()}
    signatures.setdefault(server_name, {})[f"ed25519:{version}"] = encode_base64(signature)
    signed["signatures"] = signatures
    return signed


def verify_event_signature(
    event: Mapping[str, Any], server_name: str, verify_key: VerifyKey,
    room_version: RoomVersion, key_id: str | None = None, signed: bytes | None = None,
) -> bool:
    """True if `server_name` signed the redacted event with `verify_key`.

    `key_id` ("ed25519:<version>") defaults to the signedjson key's own alg and version.
    Works on full and already-redacted copies alike. `signed`: the bytes signatures sign,
    if known already (`signing_input`).
    """
    if key_id is None:
        key_id = f"{getattr(verify_key, 'alg', 'ed25519')}:{getattr(verify_key, 'version', '')}"
    if not key_id.startswith("ed25519:"):
        return False
    signatures = event.get("signatures")
    ours = signatures.get(server_name) if isinstance(signatures, Mapping) else None
    encoded = ours.get(key_id) if isinstance(ours, Mapping) else None
    if not isinstance(encoded, str):
        return False
    try:
        verify_key.verify(signed if signed is not None else signing_input(event, room_version),
                          decode_base64(encoded))
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def check_event_size_limits(event: Mapping[str, Any]) -> None:
    """Client-server "Size limits": 65536 bytes of canonical JSON; 255-byte ID-ish keys."""
    try:
        # orjson writes what canonical JSON writes, unsorted: the same length, ~15x sooner.
        size = len(orjson.dumps(event))
    except (TypeError, orjson.JSONEncodeError):  # a float or big int orjson refuses, say
        size = len(canonical_json(event))
    if size > MAX_EVENT_BYTES:
        raise EventFormatError(f"event is {size} bytes, larger than {MAX_EVENT_BYTES}")
    for key in _SIZE_LIMITED_KEYS:
        value = event.get(key)
        if isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise EventFormatError(f"{key} is longer than {MAX_KEY_BYTES} bytes")


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


def validate_content(event_type: str, content: Mapping[str, Any]) -> None:
    """Reject content of well-known types whose fields have the wrong type."""
    for key in _STRING_CONTENT.get(event_type, ()):
        value = content.get(key)
        if value is not None and not isinstance(value, str):
            raise EventFormatError(f"{event_type} content.{key} must be a string")

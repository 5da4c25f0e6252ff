"""The redaction algorithm: v10 (the v9 fragment) and v11+ (the v11 fragment).

Redaction feeds the reference hash and event signatures, so it must match other servers
byte for byte: keep exactly the listed keys, nothing more. Adding `unsigned.redacted_because`
is the caller's business.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from veche.core.room_versions import RoomVersion

_TOP_LEVEL_V11 = frozenset({
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
})
_TOP_LEVEL_V10 = _TOP_LEVEL_V11 | {"prev_state", "origin", "membership"}

_POWER_LEVELS_V10 = ("ban", "events", "events_default", "kick", "redact", "state_default",
                     "users", "users_default")

_CONTENT_V10: dict[str, tuple[str, ...]] = {
    "m.room.member": ("membership", "join_authorised_via_users_server"),
    "m.room.create": ("creator",),
    "m.room.join_rules": ("join_rule", "allow"),
    "m.room.power_levels": _POWER_LEVELS_V10,
    "m.room.history_visibility": ("history_visibility",),
}
_CONTENT_V11: dict[str, tuple[str, ...]] = {
    "m.room.member": ("membership", "join_authorised_via_users_server"),
    "m.room.join_rules": ("join_rule", "allow"),
    "m.room.power_levels": _POWER_LEVELS_V10 + ("invite",),
    "m.room.history_visibility": ("history_visibility",),
    "m.room.redaction": ("redacts",),
}


def redact_event(event: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """Return a new, redacted copy of `event` (a PDU dict); `event` itself is untouched."""
    return copy.deepcopy(redacted_view(event, room_version))


def redacted_view(event: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """The redacted event sharing its values with `event`: for hashing and signing, which
    only read it (copying every value of every event sent is measurable)."""
    v11 = room_version.updated_redaction_rules
    keep_top = _TOP_LEVEL_V11 if v11 else _TOP_LEVEL_V10
    redacted = {k: v for k, v in event.items() if k in keep_top}
    content = event.get("content")
    redacted["content"] = _redact_content(
        event.get("type"), content if isinstance(content, Mapping) else {}, v11
    )
    return redacted


def _redact_content(event_type: object, content: Mapping[str, Any], v11: bool) -> dict[str, Any]:
    if v11 and event_type == "m.room.create":
        return dict(content)
    allowed = (_CONTENT_V11 if v11 else _CONTENT_V10).get(str(event_type), ())
    kept = {k: content[k] for k in allowed if k in content}
    if v11 and event_type == "m.room.member":
        invite = content.get("third_party_invite")
        # Only `signed` survives, so that a redacted third-party invite still authorises.
        # An object without `signed` stays as an empty object, as Synapse does.
        if isinstance(invite, Mapping):
            kept["third_party_invite"] = {"signed": invite["signed"]} if "signed" in invite else {}
    return kept

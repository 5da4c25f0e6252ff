"""The redaction algorithm (v10 and the v11+ rules)."""

from __future__ import annotations

from typing import Any

from veche.core.room_versions import RoomVersion

_TOP_LEVEL = ("event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
              "signatures", "depth", "prev_events", "auth_events", "origin_server_ts")
_TOP_LEVEL_V10 = _TOP_LEVEL + ("origin", "membership", "prev_state")


def redact_event(event: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    v11 = room_version.updated_redaction_rules
    keep_top = _TOP_LEVEL if v11 else _TOP_LEVEL_V10
    out = {k: v for k, v in event.items() if k in keep_top}
    content = event.get("content") or {}
    etype = event.get("type")
    keys: tuple[str, ...] = ()
    if etype == "m.room.member":
        keys = ("membership", "join_authorised_via_users_server")
        if v11 and isinstance(content.get("third_party_invite"), dict):
            tpi = content["third_party_invite"]
            kept: dict[str, Any] = {k: content[k] for k in keys if k in content}
            if "signed" in tpi:
                kept["third_party_invite"] = {"signed": tpi["signed"]}
            out["content"] = kept
            return _with_unsigned(out, event)
    elif etype == "m.room.create":
        if v11:
            out["content"] = dict(content)
            return _with_unsigned(out, event)
        keys = ("creator",)
    elif etype == "m.room.join_rules":
        keys = ("join_rule", "allow")
    elif etype == "m.room.power_levels":
        keys = ("ban", "events", "events_default", "kick", "redact", "state_default", "users",
                "users_default") + (("invite",) if v11 else ())
    elif etype == "m.room.history_visibility":
        keys = ("history_visibility",)
    elif etype == "m.room.redaction" and v11:
        keys = ("redacts",)
    out["content"] = {k: content[k] for k in keys if k in content}
    return _with_unsigned(out, event)


def _with_unsigned(out: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return out

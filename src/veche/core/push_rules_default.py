"""The server-default push rules, exactly as the client-server spec (v1.17) defines them.

v1.17 removed the legacy body-mention rules (``.m.rule.contains_display_name``,
``.m.rule.contains_user_name``, ``.m.rule.roomnotif``, MSC4210), so there are no
default content rules. ``USER_ID`` placeholders are replaced by the owner's user ID.
"""

from __future__ import annotations

from typing import Any, Final

USER_ID: Final = "[the user's Matrix ID]"

_SOUND_DEFAULT: Final[dict[str, Any]] = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT: Final[dict[str, Any]] = {"set_tweak": "highlight"}


def _rule(rule_id: str, conditions: list[dict[str, Any]], actions: list[Any],
          enabled: bool = True) -> dict[str, Any]:
    return {"rule_id": rule_id, "default": True, "enabled": enabled,
            "conditions": conditions, "actions": actions}


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


# Order matters: it is the priority order within each kind.
DEFAULT_OVERRIDE_RULES: Final[tuple[dict[str, Any], ...]] = (
    _rule(".m.rule.master", [], [], enabled=False),
    _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
    _rule(
        ".m.rule.invite_for_me",
        [
            _match("type", "m.room.member"),
            _match("content.membership", "invite"),
            _match("state_key", USER_ID),
        ],
        ["notify", _SOUND_DEFAULT],
    ),
    _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
    _rule(
        ".m.rule.is_user_mention",
        [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
          "value": USER_ID}],
        ["notify", _SOUND_DEFAULT, _HIGHLIGHT],
    ),
    _rule(
        ".m.rule.is_room_mention",
        [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
            {"kind": "sender_notification_permission", "key": "room"},
        ],
        ["notify", _HIGHLIGHT],
    ),
    _rule(
        ".m.rule.tombstone",
        [_match("type", "m.room.tombstone"), _match("state_key", "")],
        ["notify", _HIGHLIGHT],
    ),
    _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
    _rule(
        ".m.rule.room.server_acl",
        [_match("type", "m.room.server_acl"), _match("state_key", "")],
        [],
    ),
    _rule(
        ".m.rule.suppress_edits",
        [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type",
          "value": "m.replace"}],
        [],
    ),
)

DEFAULT_CONTENT_RULES: Final[tuple[dict[str, Any], ...]] = ()

DEFAULT_UNDERRIDE_RULES: Final[tuple[dict[str, Any], ...]] = (
    _rule(".m.rule.call", [_match("type", "m.call.invite")],
          ["notify", {"set_tweak": "sound", "value": "ring"}]),
    _rule(
        ".m.rule.encrypted_room_one_to_one",
        [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted")],
        ["notify", _SOUND_DEFAULT],
    ),
    _rule(
        ".m.rule.room_one_to_one",
        [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message")],
        ["notify", _SOUND_DEFAULT],
    ),
    _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
    _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
)

DEFAULT_RULES_BY_KIND: Final[dict[str, tuple[dict[str, Any], ...]]] = {
    "override": DEFAULT_OVERRIDE_RULES,
    "content": DEFAULT_CONTENT_RULES,
    "room": (),
    "sender": (),
    "underride": DEFAULT_UNDERRIDE_RULES,
}


def _substitute(value: Any, user_id: str) -> Any:
    if isinstance(value, str):
        return user_id if value == USER_ID else value
    if isinstance(value, list):
        return [_substitute(v, user_id) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, user_id) for k, v in value.items()}
    return value


def default_rules(kind: str, user_id: str) -> list[dict[str, Any]]:
    """Fresh (copied) default rules of ``kind`` for ``user_id``, in priority order."""
    return [_substitute(r, user_id) for r in DEFAULT_RULES_BY_KIND[kind]]

"""The spec's default push ruleset (client-server API, "Push Rules": predefined rules)."""

from __future__ import annotations

from typing import Any

Rule = dict[str, Any]

_NOTIFY_SOUND = ["notify", {"set_tweak": "sound", "value": "default"}]
_NOTIFY_HIGHLIGHT = ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]


def _match(key: str, pattern: str) -> dict[str, str]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _is(key: str, value: Any) -> dict[str, Any]:
    return {"kind": "event_property_is", "key": key, "value": value}


def _rule(rule_id: str, conditions: list[dict[str, Any]] | None, actions: list[Any],
          enabled: bool = True) -> Rule:
    rule: Rule = {"rule_id": rule_id, "default": True, "enabled": enabled, "actions": actions}
    if conditions is not None:
        rule["conditions"] = conditions
    return rule


def default_ruleset(user_id: str) -> dict[str, Any]:
    localpart = user_id[1:].split(":", 1)[0]
    override = [
        _rule(".m.rule.master", [], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _rule(".m.rule.invite_for_me", [
            _match("type", "m.room.member"), _match("content.membership", "invite"),
            _match("state_key", user_id),
        ], _NOTIFY_SOUND),
        _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _rule(".m.rule.is_user_mention", [{
            "kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
            "value": user_id,
        }], _NOTIFY_HIGHLIGHT),
        _rule(".m.rule.is_room_mention", [
            _is("content.m\\.mentions.room", True),
            {"kind": "sender_notification_permission", "key": "room"},
        ], ["notify", {"set_tweak": "highlight"}]),
        _rule(".m.rule.tombstone", [
            _match("type", "m.room.tombstone"), _match("state_key", ""),
        ], ["notify", {"set_tweak": "highlight"}]),
        _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _rule(".m.rule.room.server_acl", [
            _match("type", "m.room.server_acl"), _match("state_key", ""),
        ], []),
        _rule(".m.rule.suppress_edits", [_is("content.m\\.relates_to.rel_type", "m.replace")], []),
    ]
    content = [{
        **_rule(".m.rule.contains_user_name", None, _NOTIFY_HIGHLIGHT),
        "pattern": localpart,
    }]
    one_to_one = {"kind": "room_member_count", "is": "2"}
    underride = [
        _rule(".m.rule.call", [_match("type", "m.call.invite")],
              ["notify", {"set_tweak": "sound", "value": "ring"}]),
        _rule(".m.rule.encrypted_room_one_to_one", [one_to_one, _match("type", "m.room.encrypted")],
              _NOTIFY_SOUND),
        _rule(".m.rule.room_one_to_one", [one_to_one, _match("type", "m.room.message")],
              _NOTIFY_SOUND),
        _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]
    return {"global": {"override": override, "content": content, "room": [], "sender": [],
                       "underride": underride}}

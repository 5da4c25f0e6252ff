"""The authorisation rules for room versions 10, 11 and 12."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

StateMap = Mapping[tuple[str, str], dict[str, Any]]
INFINITE = float("inf")


class AuthError(Exception):
    pass


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def auth_types_for_event(room_version: RoomVersion, event: dict[str, Any]) -> set[tuple[str, str]]:
    """The spec's auth events selection."""
    if event["type"] == "m.room.create":
        return set()
    keys = {("m.room.power_levels", ""), ("m.room.member", event["sender"])}
    if room_version.create_event_in_auth_events:
        keys.add(("m.room.create", ""))
    if event["type"] == "m.room.member":
        content = event.get("content", {})
        target = event.get("state_key")
        if isinstance(target, str):
            keys.add(("m.room.member", target))
        membership = content.get("membership")
        if membership in ("join", "invite", "knock"):
            keys.add(("m.room.join_rules", ""))
        if membership == "invite" and isinstance(content.get("third_party_invite"), dict):
            token = content["third_party_invite"].get("signed", {}).get("token")
            if isinstance(token, str):
                keys.add(("m.room.third_party_invite", token))
        via = content.get("join_authorised_via_users_server")
        if membership == "join" and isinstance(via, str):
            keys.add(("m.room.member", via))
    return keys


def room_creators(create_event: dict[str, Any], room_version: RoomVersion) -> set[str]:
    creators = {create_event["sender"]}
    if room_version.creators_have_infinite_power:
        extra = create_event.get("content", {}).get("additional_creators", [])
        if isinstance(extra, list):
            creators.update(u for u in extra if isinstance(u, str))
    return creators


def get_named_level(power_levels: Mapping[str, Any], name: str, default: int) -> int:
    value = power_levels.get(name, default)
    return value if isinstance(value, int) else default


def get_user_power_level(user_id: str, state: StateMap, room_version: RoomVersion) -> int | float:
    create = state.get(("m.room.create", ""))
    if create is not None and room_version.creators_have_infinite_power:
        if user_id in room_creators(create, room_version):
            return INFINITE
    pl = state.get(("m.room.power_levels", ""))
    if pl is None:
        if create is not None:
            creator = create["sender"] if not room_version.create_has_creator_field else \
                create.get("content", {}).get("creator", create["sender"])
            return 100 if user_id == creator else 0
        return 0
    content = pl.get("content", {})
    users = content.get("users", {})
    if isinstance(users, dict) and user_id in users and isinstance(users[user_id], int):
        return int(users[user_id])
    return get_named_level(content, "users_default", 0)


def get_required_power_level_for_event(
    event_type: str, is_state: bool, power_levels: Mapping[str, Any]
) -> int:
    events = power_levels.get("events", {})
    if isinstance(events, dict) and isinstance(events.get(event_type), int):
        return int(events[event_type])
    if is_state:
        return get_named_level(power_levels, "state_default", 50 if power_levels else 0)
    return get_named_level(power_levels, "events_default", 0)


def _membership(state: StateMap, user_id: str) -> str:
    ev = state.get(("m.room.member", user_id))
    return str(ev.get("content", {}).get("membership", "leave")) if ev else "leave"


def _is_valid_user_id(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("@") and ":" in value and len(value) <= 255


def check_auth_rules(room_version: RoomVersion, event: dict[str, Any], auth_state: StateMap) -> None:
    etype = event.get("type")
    sender = event.get("sender", "")
    # Rule 1: m.room.create
    if etype == "m.room.create":
        if event.get("prev_events"):
            raise AuthError("1.1: create event has prev_events")
        if room_version.room_id_is_create_event_hash:
            if "room_id" in event:
                raise AuthError("1.2: create event has a room_id")
        elif _server_of(event.get("room_id", "")) != _server_of(sender):
            raise AuthError("1.2: room_id domain differs from sender domain")
        content = event.get("content", {})
        rv = content.get("room_version", "1")
        if "room_version" in content and rv not in KNOWN_ROOM_VERSIONS and not isinstance(rv, str):
            raise AuthError("1.3: unknown room_version")
        if room_version.create_has_creator_field and "creator" not in content:
            raise AuthError("1.4: create event has no creator")
        if room_version.creators_have_infinite_power and "additional_creators" in content:
            extra = content["additional_creators"]
            if not isinstance(extra, list) or not all(_is_valid_user_id(u) for u in extra):
                raise AuthError("1.4: additional_creators must be a list of user IDs")
        return
    create = auth_state.get(("m.room.create", ""))
    if create is None:
        raise AuthError("no m.room.create event in the room state")
    # Rule 4 (v12 numbering): m.federate
    if create.get("content", {}).get("m.federate") is False and \
            _server_of(sender) != _server_of(create["sender"]):
        raise AuthError("m.federate is false and sender is from another server")
    content = event.get("content", {})
    if etype == "m.room.member":
        _check_membership(room_version, event, auth_state, create)
        return
    # Sender must be joined.
    if _membership(auth_state, sender) != "join":
        raise AuthError("sender is not joined to the room")
    if etype == "m.room.third_party_invite":
        _require_level(room_version, auth_state, sender, "invite", 0)
        return
    sender_level = get_user_power_level(sender, auth_state, room_version)
    pl_content = auth_state.get(("m.room.power_levels", ""), {}).get("content", {})
    required = get_required_power_level_for_event(
        str(etype), "state_key" in event, pl_content if ("m.room.power_levels", "") in auth_state else {}
    )
    if sender_level < required:
        raise AuthError(f"sender's power level {sender_level} is below {required} for {etype}")
    state_key = event.get("state_key")
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != sender:
        raise AuthError("state_key starting with @ must be the sender")
    if etype == "m.room.power_levels":
        _check_power_levels(room_version, event, auth_state, create, sender_level)


def _require_level(rv: RoomVersion, state: StateMap, sender: str, name: str, default: int) -> None:
    pl = state.get(("m.room.power_levels", ""), {}).get("content", {})
    if get_user_power_level(sender, state, rv) < get_named_level(pl, name, default):
        raise AuthError(f"sender's power level is below the {name} level")


def _check_membership(
    rv: RoomVersion, event: dict[str, Any], state: StateMap, create: dict[str, Any]
) -> None:
    content = event.get("content", {})
    target = event.get("state_key")
    membership = content.get("membership")
    if not isinstance(target, str) or not isinstance(membership, str):
        raise AuthError("5.1: member event needs state_key and membership")
    sender = event["sender"]
    jr_event = state.get(("m.room.join_rules", ""))
    join_rule = jr_event.get("content", {}).get("join_rule", "invite") if jr_event else "invite"
    sender_m = _membership(state, sender)
    target_m = _membership(state, target)
    pl = state.get(("m.room.power_levels", ""), {}).get("content", {})
    sender_level = get_user_power_level(sender, state, rv)
    target_level = get_user_power_level(target, state, rv)
    if membership == "join":
        prev = event.get("prev_events", [])
        if len(prev) == 1 and prev[0] == create.get("event_id") and target == create["sender"]:
            return
        if sender != target:
            raise AuthError("5.3.2: sender does not match state_key")
        if sender_m == "ban":
            raise AuthError("5.3.3: sender is banned")
        if join_rule in ("invite", "knock"):
            if sender_m in ("invite", "join"):
                return
            raise AuthError("5.3.4: not invited")
        if join_rule in ("restricted", "knock_restricted"):
            if sender_m in ("invite", "join"):
                return
            via = content.get("join_authorised_via_users_server")
            if not isinstance(via, str) or _membership(state, via) != "join" or \
                    get_user_power_level(via, state, rv) < get_named_level(pl, "invite", 0):
                raise AuthError("5.3.5.2: join not authorised by a joined member who can invite")
            return
        if join_rule == "public":
            return
        raise AuthError("5.3.7: join rule does not allow joining")
    if membership == "invite":
        if "third_party_invite" in content:
            raise AuthError("5.4.1: third party invites are not supported here")
        if sender_m != "join":
            raise AuthError("5.4.2: sender is not joined")
        if target_m in ("join", "ban"):
            raise AuthError("5.4.3: target is joined or banned")
        if sender_level >= get_named_level(pl, "invite", 0):
            return
        raise AuthError("5.4.5: sender's power level is below the invite level")
    if membership == "leave":
        if sender == target:
            if sender_m in ("invite", "join", "knock"):
                return
            raise AuthError("5.5.1: cannot leave a room you are not in")
        if sender_m != "join":
            raise AuthError("5.5.2: sender is not joined")
        if target_m == "ban" and sender_level < get_named_level(pl, "ban", 50):
            raise AuthError("5.5.3: sender's power level is below the ban level")
        if sender_level >= get_named_level(pl, "kick", 50) and target_level < sender_level:
            return
        raise AuthError("5.5.5: sender may not kick the target")
    if membership == "ban":
        if sender_m != "join":
            raise AuthError("5.6.1: sender is not joined")
        if sender_level >= get_named_level(pl, "ban", 50) and target_level < sender_level:
            return
        raise AuthError("5.6.3: sender may not ban the target")
    if membership == "knock":
        if join_rule not in ("knock", "knock_restricted"):
            raise AuthError("5.7.1: join rule does not allow knocking")
        if sender != target:
            raise AuthError("5.7.2: sender does not match state_key")
        if sender_m not in ("ban", "invite", "join"):
            return
        raise AuthError("5.7.4: already banned, invited or joined")
    raise AuthError(f"unknown membership {membership!r}")


_LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")


def _check_power_levels(
    rv: RoomVersion, event: dict[str, Any], state: StateMap, create: dict[str, Any],
    sender_level: int | float,
) -> None:
    new = event.get("content", {})
    for key in _LEVEL_KEYS:
        if key in new and (not isinstance(new[key], int) or isinstance(new[key], bool)):
            raise AuthError(f"10.1: {key} must be an integer")
    for key in ("events", "notifications"):
        if key in new:
            if not isinstance(new[key], dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in new[key].values()
            ):
                raise AuthError(f"10.2: {key} values must be integers")
    users = new.get("users", {})
    if not isinstance(users, dict):
        raise AuthError("10.3: users must be an object")
    for uid, level in users.items():
        if not _is_valid_user_id(uid) or not isinstance(level, int) or isinstance(level, bool):
            raise AuthError("10.3: users must map user IDs to integers")
    if rv.creators_have_infinite_power:
        creators = room_creators(create, rv)
        if any(u in creators for u in users):
            raise AuthError("10.4: room creators cannot be listed in users")
    old_ev = state.get(("m.room.power_levels", ""))
    if old_ev is None:
        return
    old = old_ev.get("content", {})

    def check_change(old_v: Any, new_v: Any, what: str) -> None:
        if old_v == new_v:
            return
        if old_v is not None and old_v > sender_level:
            raise AuthError(f"10.5: cannot change {what} above your own level")
        if new_v is not None and new_v > sender_level:
            raise AuthError(f"10.5: cannot set {what} above your own level")

    defaults = {"users_default": 0, "events_default": 0, "state_default": 50, "ban": 50,
                "redact": 50, "kick": 50, "invite": 0}
    for key in _LEVEL_KEYS:
        check_change(old.get(key, defaults[key]) if key in old else None,
                     new.get(key) if key in new else None, key)
    for key in ("events", "notifications"):
        o, n = old.get(key, {}) or {}, new.get(key, {}) or {}
        for k in set(o) | set(n):
            check_change(o.get(k), n.get(k), f"{key}.{k}")
    old_users = old.get("users", {}) or {}
    sender = event["sender"]
    for uid in set(old_users) | set(users):
        o, n = old_users.get(uid), users.get(uid)
        if o == n:
            continue
        if uid != sender and o is not None and o >= sender_level:
            raise AuthError("10.6: cannot change the level of a user at or above your own")
        check_change(o, n, f"users.{uid}")

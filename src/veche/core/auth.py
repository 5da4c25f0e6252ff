"""The authorisation rules of room versions 10, 11 and 12, and the power level helpers.

Rule labels in AuthError use the numbering of the room version being checked: v12 inserts
rule 2 (room ID is the create event's hash) and rule 10.4 (creators not in `users`), which
shifts every later number by one compared with v10/v11.

Two checks need more than the room state and are the caller's part:
- "Events must be signed by the server denoted by the sender" (verify_event_signature);
- whether auth events were themselves rejected (pass `rejected_event_ids` to
  check_auth_events).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, NoReturn

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from unpaddedbase64 import decode_base64

from veche.core.events import canonical_json, compute_event_id, room_id_from_create_event_id
from veche.core.identifiers import is_valid_user_id, server_name_of
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, Mapping[str, Any]]
# (event, server_name) -> whether server_name validly signed the event.
SignatureCheck = Callable[[Mapping[str, Any], str], bool]

INFINITE = float("inf")
CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")
JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")

# Levels the spec defines ("Definitions" in server-server-api) with their defaults.
LEVEL_DEFAULTS: dict[str, int] = {
    "users_default": 0, "events_default": 0, "state_default": 50,
    "ban": 50, "kick": 50, "redact": 50, "invite": 0,
}


class AuthError(Exception):
    """The event is not authorised; `rule` is the failing rule's number in its room version."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"auth rule {rule}: {reason}")
        self.rule = rule
        self.reason = reason


def _rule_number(rv: RoomVersion, v11_rule: str) -> str:
    if not rv.room_id_is_create_event_hash or v11_rule.startswith("1."):
        return v11_rule
    parts = [int(p) for p in v11_rule.split(".")]
    if parts[0] >= 2:
        parts[0] += 1
    if parts[0] == 10 and len(parts) > 1 and parts[1] >= 4:
        parts[1] += 1
    return ".".join(str(p) for p in parts)


def _reject(rv: RoomVersion, v11_rule: str, reason: str) -> NoReturn:
    raise AuthError(_rule_number(rv, v11_rule), reason)


def _content(event: Mapping[str, Any] | None) -> Mapping[str, Any]:
    content = event.get("content") if event is not None else None
    return content if isinstance(content, Mapping) else {}


def _as_int(value: object) -> int | None:
    # JSON true/false arrive as bool, a subclass of int, but are not integers.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- Power levels -----------------------------------------------------------------------


def room_creators(create_event: Mapping[str, Any], room_version: RoomVersion) -> set[str]:
    """v1-10: content.creator; v11: the sender; v12: the sender plus additional_creators."""
    content = _content(create_event)
    if room_version.create_has_creator_field and isinstance(content.get("creator"), str):
        return {content["creator"]}
    creators = {str(create_event.get("sender", ""))}
    if room_version.creators_have_infinite_power:
        extra = content.get("additional_creators")
        if isinstance(extra, list):
            creators.update(u for u in extra if isinstance(u, str))
    return creators


def get_named_level(power_levels_content: Mapping[str, Any], name: str, default: int) -> int:
    level = _as_int(power_levels_content.get(name))
    return default if level is None else level


def get_user_power_level(user_id: str, auth_state: StateMap, room_version: RoomVersion) -> int | float:
    create = auth_state.get(CREATE_KEY)
    is_creator = create is not None and user_id in room_creators(create, room_version)
    if is_creator and room_version.creators_have_infinite_power:
        return INFINITE
    power_levels = auth_state.get(POWER_LEVELS_KEY)
    if power_levels is None:
        return 100 if is_creator else 0
    content = _content(power_levels)
    users = content.get("users")
    if isinstance(users, Mapping):
        level = _as_int(users.get(user_id))
        if level is not None:
            return level
    return get_named_level(content, "users_default", 0)


def get_required_power_level_for_event(
    event_type: str, is_state: bool, power_levels_content: Mapping[str, Any]
) -> int:
    """The *required power level*: `events[type]`, else state_default / events_default."""
    events = power_levels_content.get("events")
    if isinstance(events, Mapping):
        level = _as_int(events.get(event_type))
        if level is not None:
            return level
    if is_state:
        return get_named_level(power_levels_content, "state_default", 50)
    return get_named_level(power_levels_content, "events_default", 0)


def _level_of(name: str, auth_state: StateMap) -> int:
    return get_named_level(_content(auth_state.get(POWER_LEVELS_KEY)), name, LEVEL_DEFAULTS[name])


def can_redact(
    redaction_sender: str, original_sender: str, auth_state: StateMap, room_version: RoomVersion
) -> bool:
    """"Handling redactions": apply if the sender has the redact level or shares a domain."""
    if server_name_of(redaction_sender) == server_name_of(original_sender):
        return True
    level = get_user_power_level(redaction_sender, auth_state, room_version)
    return level >= _level_of("redact", auth_state)


def membership_of(user_id: str, auth_state: StateMap) -> str | None:
    membership = _content(auth_state.get(("m.room.member", user_id))).get("membership")
    return membership if isinstance(membership, str) else None


# --- Auth events selection and the auth_events rules ------------------------------------


def auth_types_for_event(room_version: RoomVersion, event: Mapping[str, Any]) -> set[StateKey]:
    """The (type, state_key) pairs the spec's "auth events selection" picks for `event`."""
    if event.get("type") == "m.room.create":
        return set()
    keys: set[StateKey] = {POWER_LEVELS_KEY, ("m.room.member", str(event.get("sender", "")))}
    if room_version.create_event_in_auth_events:
        keys.add(CREATE_KEY)
    if event.get("type") != "m.room.member":
        return keys
    content = _content(event)
    membership = content.get("membership")
    if isinstance(event.get("state_key"), str):
        keys.add(("m.room.member", event["state_key"]))
    if membership in ("join", "invite", "knock"):
        keys.add(JOIN_RULES_KEY)
    invite = content.get("third_party_invite")
    if membership == "invite" and isinstance(invite, Mapping):
        signed = invite.get("signed")
        token = signed.get("token") if isinstance(signed, Mapping) else None
        if isinstance(token, str):
            keys.add(("m.room.third_party_invite", token))
    via = content.get("join_authorised_via_users_server")
    if membership == "join" and isinstance(via, str) and room_version.restricted_join_rule:
        keys.add(("m.room.member", via))
    return keys


def check_auth_events(
    room_version: RoomVersion,
    event: Mapping[str, Any],
    auth_events: Iterable[Mapping[str, Any]],
    rejected_event_ids: Collection[str] = frozenset(),
) -> None:
    """Rules 2.x (v10/v11) / 3.x (v12) on the event's own `auth_events` list.

    These need the list itself (duplicates, extras), so they are apart from check_auth_rules,
    which is also run against full room states where extra entries are normal.
    """
    if event.get("type") == "m.room.create":
        return
    wanted = auth_types_for_event(room_version, event)
    seen: set[StateKey] = set()
    for auth_event in auth_events:
        key = (str(auth_event.get("type")), str(auth_event.get("state_key")))
        if key in seen:
            _reject(room_version, "2.1", f"duplicate auth event for {key}")
        seen.add(key)
        if key not in wanted:
            _reject(room_version, "2.2", f"auth event {key} is not one the selection picks")
        if auth_event.get("event_id") in rejected_event_ids:
            _reject(room_version, "2.3", f"auth event {auth_event.get('event_id')} was rejected")
        if auth_event.get("room_id") != event.get("room_id"):
            _reject(room_version, "2.5", "an auth event belongs to a different room")
    if room_version.create_event_in_auth_events and CREATE_KEY not in seen:
        _reject(room_version, "2.4", "no m.room.create event among the auth events")


# --- The rules --------------------------------------------------------------------------


def check_auth_rules(
    room_version: RoomVersion,
    event: Mapping[str, Any],
    auth_state: StateMap,
    *,
    is_signed_by: SignatureCheck | None = None,
) -> None:
    """Raise AuthError unless `event` is allowed against `auth_state`.

    `auth_state` maps (type, state_key) to the state events the rules read; it must hold the
    m.room.create event for any other event, also in v12 where it is not an auth event.

    `is_signed_by` implements rule 4.2.1 (v11 numbering): a join with
    `join_authorised_via_users_server` must be signed by that user's server. When it is
    None the check is skipped: that is right only for events this server builds itself,
    which it signs as the authorising server right after these checks.
    """
    rv = room_version
    if event.get("type") == "m.room.create":
        _check_create(rv, event)
        return
    create = auth_state.get(CREATE_KEY)
    if create is None:
        if rv.room_id_is_create_event_hash:
            raise AuthError("2", "the room's m.room.create event is unknown")
        _reject(rv, "2.4", "no m.room.create event in the auth state")
    if rv.room_id_is_create_event_hash and (
            event.get("room_id") != room_id_from_create_event_id(_event_id(create, rv))):
        raise AuthError("2", "room_id is not the ID of the room's m.room.create event")
    for key, state_event in auth_state.items():
        if key == CREATE_KEY and rv.room_id_is_create_event_hash:
            continue  # v12 create events have no room_id; rule 2 covered it.
        if state_event.get("room_id") != event.get("room_id"):
            _reject(rv, "2.5", f"auth event {key} belongs to a different room")

    sender = str(event.get("sender", ""))
    if _content(create).get("m.federate") is False and (
        server_name_of(sender) != server_name_of(str(create.get("sender", "")))
    ):
        _reject(rv, "3", "m.federate is false and the sender is on another server")

    if event.get("type") == "m.room.member":
        _check_membership(rv, event, auth_state, create, is_signed_by)
        return

    if membership_of(sender, auth_state) != "join":
        _reject(rv, "5", "the sender is not joined to the room")
    sender_level = get_user_power_level(sender, auth_state, rv)

    if event.get("type") == "m.room.third_party_invite":
        if sender_level >= _level_of("invite", auth_state):
            return
        _reject(rv, "6.1", "the sender's power level is below the invite level")

    event_type = str(event.get("type"))
    required = get_required_power_level_for_event(
        event_type, "state_key" in event, _content(auth_state.get(POWER_LEVELS_KEY))
    )
    if required > sender_level:
        _reject(rv, "7", f"sending {event_type} needs power level {required}")

    state_key = event.get("state_key")
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != sender:
        _reject(rv, "8", "a state_key starting with @ must be the sender")

    if event_type == "m.room.power_levels":
        _check_power_levels(rv, event, auth_state, create, sender_level)


def _event_id(event: Mapping[str, Any], rv: RoomVersion) -> str:
    event_id = event.get("event_id")
    return event_id if isinstance(event_id, str) else compute_event_id(event, rv)


def _check_create(rv: RoomVersion, event: Mapping[str, Any]) -> None:
    if event.get("prev_events"):
        raise AuthError("1.1", "the create event has prev_events")
    sender = str(event.get("sender", ""))
    if rv.room_id_is_create_event_hash:
        if "room_id" in event:
            raise AuthError("1.2", "a v12 create event must not have a room_id")
    elif server_name_of(str(event.get("room_id", ""))) != server_name_of(sender):
        raise AuthError("1.2", "the room_id's domain differs from the sender's")
    content = _content(event)
    if "room_version" in content and content["room_version"] not in KNOWN_ROOM_VERSIONS:
        raise AuthError("1.3", f"unrecognised room_version {content['room_version']!r}")
    if rv.create_has_creator_field and "creator" not in content:
        raise AuthError("1.4", "the create event has no content.creator")
    if rv.creators_have_infinite_power and "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError("1.4", "additional_creators must be an array of user IDs")


def _check_membership(
    rv: RoomVersion, event: Mapping[str, Any], state: StateMap, create: Mapping[str, Any],
    is_signed_by: SignatureCheck | None,
) -> None:
    content = _content(event)
    target = event.get("state_key")
    if not isinstance(target, str) or "membership" not in content:
        _reject(rv, "4.1", "a member event needs a state_key and content.membership")
    via = content.get("join_authorised_via_users_server")
    if via is not None and is_signed_by is not None:
        if not isinstance(via, str) or not is_signed_by(event, server_name_of(via)):
            _reject(rv, "4.2.1", "not signed by the join_authorised_via_users_server's server")
    membership = content["membership"]
    if membership == "join":
        _check_join(rv, event, state, create, target)
    elif membership == "invite":
        _check_invite(rv, event, state, target)
    elif membership == "leave":
        _check_leave(rv, event, state, target)
    elif membership == "ban":
        _check_ban(rv, event, state, target)
    elif membership == "knock" and rv.knock_join_rule:
        _check_knock(rv, event, state, target)
    else:
        _reject(rv, "4.8", f"unknown membership {membership!r}")


def _join_rule(state: StateMap) -> object:
    return _content(state.get(JOIN_RULES_KEY)).get("join_rule", "invite")


def _check_join(
    rv: RoomVersion, event: Mapping[str, Any], state: StateMap, create: Mapping[str, Any],
    target: str,
) -> None:
    prev_events = event.get("prev_events")
    first_creator = (
        _content(create).get("creator") if rv.create_has_creator_field else create.get("sender")
    )
    if (isinstance(prev_events, list) and len(prev_events) == 1
            and prev_events[0] == _event_id(create, rv) and target == first_creator):
        return
    sender = event.get("sender")
    if sender != target:
        _reject(rv, "4.3.2", "the sender does not match the state_key")
    current = membership_of(target, state)
    if current == "ban":
        _reject(rv, "4.3.3", "the sender is banned")
    join_rule = _join_rule(state)
    if join_rule == "invite" or (join_rule == "knock" and rv.knock_join_rule):
        if current in ("invite", "join"):
            return
        _reject(rv, "4.3.4", f"the join rule is {join_rule} and the sender is not invited")
    if (join_rule == "restricted" and rv.restricted_join_rule) or (
            join_rule == "knock_restricted" and rv.knock_restricted_join_rule):
        if current in ("invite", "join"):
            return
        via = _content(event).get("join_authorised_via_users_server")
        if not isinstance(via, str) or membership_of(via, state) != "join" or (
                get_user_power_level(via, state, rv) < _level_of("invite", state)):
            _reject(rv, "4.3.5.2", "join_authorised_via_users_server is not a joined member "
                                   "who may invite")
        return
    if join_rule == "public":
        return
    _reject(rv, "4.3.7", f"the join rule {join_rule!r} does not allow joining")


def _check_invite(rv: RoomVersion, event: Mapping[str, Any], state: StateMap, target: str) -> None:
    content = _content(event)
    sender = str(event.get("sender", ""))
    if "third_party_invite" in content:
        _check_third_party_invite(rv, event, state, target)
        return
    if membership_of(sender, state) != "join":
        _reject(rv, "4.4.2", "the sender is not joined")
    if membership_of(target, state) in ("join", "ban"):
        _reject(rv, "4.4.3", "the target is joined or banned")
    if get_user_power_level(sender, state, rv) >= _level_of("invite", state):
        return
    _reject(rv, "4.4.5", "the sender's power level is below the invite level")


def _check_third_party_invite(
    rv: RoomVersion, event: Mapping[str, Any], state: StateMap, target: str
) -> None:
    if membership_of(target, state) == "ban":
        _reject(rv, "4.4.1.1", "the target is banned")
    invite = _content(event)["third_party_invite"]
    signed = invite.get("signed") if isinstance(invite, Mapping) else None
    if not isinstance(signed, Mapping):
        _reject(rv, "4.4.1.2", "third_party_invite has no signed object")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        _reject(rv, "4.4.1.3", "signed lacks mxid or token")
    if mxid != target:
        _reject(rv, "4.4.1.4", "signed.mxid does not match the state_key")
    invite_event = state.get(("m.room.third_party_invite", token))
    if invite_event is None:
        _reject(rv, "4.4.1.5", "no m.room.third_party_invite event for the token")
    if invite_event.get("sender") != event.get("sender"):
        _reject(rv, "4.4.1.6", "the sender did not send the m.room.third_party_invite")
    if _signed_by_any(signed, _third_party_public_keys(_content(invite_event))):
        return
    _reject(rv, "4.4.1.8", "no signature in signed matches the invite's public keys")


def _third_party_public_keys(content: Mapping[str, Any]) -> list[str]:
    keys = [content["public_key"]] if isinstance(content.get("public_key"), str) else []
    listed = content.get("public_keys")
    if isinstance(listed, list):
        keys += [k["public_key"] for k in listed
                 if isinstance(k, Mapping) and isinstance(k.get("public_key"), str)]
    return keys


def _signed_by_any(signed: Mapping[str, Any], public_keys: list[str]) -> bool:
    signatures = signed.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    message = canonical_json({k: v for k, v in signed.items() if k not in ("signatures", "unsigned")})
    for public_key in public_keys:
        for by_key in signatures.values():
            if not isinstance(by_key, Mapping):
                continue
            for key_id, signature in by_key.items():
                if not str(key_id).startswith("ed25519:") or not isinstance(signature, str):
                    continue
                try:
                    VerifyKey(decode_base64(public_key)).verify(message, decode_base64(signature))
                except (BadSignatureError, ValueError, TypeError):
                    continue
                return True
    return False


def _check_leave(rv: RoomVersion, event: Mapping[str, Any], state: StateMap, target: str) -> None:
    sender = str(event.get("sender", ""))
    if sender == target:
        if membership_of(target, state) in ("invite", "join", "knock"):
            return
        _reject(rv, "4.5.1", "only an invited, joined or knocking user can leave")
    if membership_of(sender, state) != "join":
        _reject(rv, "4.5.2", "the sender is not joined")
    sender_level = get_user_power_level(sender, state, rv)
    if membership_of(target, state) == "ban" and sender_level < _level_of("ban", state):
        _reject(rv, "4.5.3", "unbanning needs the ban level")
    if sender_level >= _level_of("kick", state) and (
            get_user_power_level(target, state, rv) < sender_level):
        return
    _reject(rv, "4.5.5", "kicking needs the kick level and a higher level than the target")


def _check_ban(rv: RoomVersion, event: Mapping[str, Any], state: StateMap, target: str) -> None:
    sender = str(event.get("sender", ""))
    if membership_of(sender, state) != "join":
        _reject(rv, "4.6.1", "the sender is not joined")
    sender_level = get_user_power_level(sender, state, rv)
    if sender_level >= _level_of("ban", state) and (
            get_user_power_level(target, state, rv) < sender_level):
        return
    _reject(rv, "4.6.3", "banning needs the ban level and a higher level than the target")


def _check_knock(rv: RoomVersion, event: Mapping[str, Any], state: StateMap, target: str) -> None:
    join_rule = _join_rule(state)
    if not (join_rule == "knock" or (join_rule == "knock_restricted"
                                     and rv.knock_restricted_join_rule)):
        _reject(rv, "4.7.1", f"the join rule {join_rule!r} does not allow knocking")
    if event.get("sender") != target:
        _reject(rv, "4.7.2", "the sender does not match the state_key")
    if membership_of(target, state) not in ("ban", "invite", "join"):
        return
    _reject(rv, "4.7.4", "banned, invited or joined users cannot knock")


_LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")


def _check_power_levels(
    rv: RoomVersion, event: Mapping[str, Any], state: StateMap, create: Mapping[str, Any],
    sender_level: int | float,
) -> None:
    new = _content(event)
    for key in _LEVEL_KEYS:
        if key in new and _as_int(new[key]) is None:
            _reject(rv, "9.1", f"{key} must be an integer")
    for key in ("events", "notifications"):
        if key in new and not _is_int_map(new[key]):
            _reject(rv, "9.2", f"{key} must be an object of integers")
    users = new.get("users", {})
    if not _is_int_map(users) or not all(is_valid_user_id(u) for u in users):
        _reject(rv, "9.3", "users must map valid user IDs to integers")
    if rv.creators_have_infinite_power:
        listed = room_creators(create, rv) & set(users)
        if listed:
            raise AuthError("10.4", f"room creators cannot be listed in users: {sorted(listed)}")

    previous = state.get(POWER_LEVELS_KEY)
    if previous is None:
        return
    old = _content(previous)
    for key in _LEVEL_KEYS:
        old_value, new_value = _as_int(old.get(key)), _as_int(new.get(key))
        if old_value == new_value:
            continue
        if old_value is not None and old_value > sender_level:
            _reject(rv, "9.5.1", f"cannot change {key} from above your own level")
        if new_value is not None and new_value > sender_level:
            _reject(rv, "9.5.2", f"cannot set {key} above your own level")
    for key in ("events", "notifications"):
        old_map = _int_map(old.get(key))
        new_map = _int_map(new.get(key))
        for name in old_map.keys() | new_map.keys():
            old_value, new_value = old_map.get(name), new_map.get(name)
            if old_value == new_value:
                continue
            if old_value is not None and old_value > sender_level:
                _reject(rv, "9.6.1", f"cannot change {key}.{name} from above your own level")
            if new_value is not None and new_value > sender_level:
                _reject(rv, "9.7.1", f"cannot set {key}.{name} above your own level")
    old_users, sender = _int_map(old.get("users")), event.get("sender")
    for user_id in old_users.keys() | users.keys():
        old_value, new_value = old_users.get(user_id), users.get(user_id)
        if old_value == new_value:
            continue
        if user_id != sender and old_value is not None and old_value >= sender_level:
            _reject(rv, "9.8.1", f"cannot change the level of {user_id}, at or above your own")
        if new_value is not None and new_value > sender_level:
            _reject(rv, "9.9.1", f"cannot set {user_id} above your own level")


def _is_int_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(_as_int(v) is not None for v in value.values())


def _int_map(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if _as_int(v) is not None}

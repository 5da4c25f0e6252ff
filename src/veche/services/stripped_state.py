"""The stripped state a user invited to (or knocking on) a room is shown in /sync's
`invite_state` and `knock_state` (client-server API "Stripped state")."""

from __future__ import annotations

from typing import Any

from veche.storage import events as event_store
from veche.storage.database import Txn

StateKey = tuple[str, str]
# What an invite or knock shows of the room, locally in /sync and to other servers in
# invite_room_state / knock_room_state (client-server "Stripped state"; v1.16 adds the create;
# the topic as in Synapse's default room_prejoin_state).
STRIPPED_STATE: tuple[StateKey, ...] = (
    ("m.room.create", ""), ("m.room.join_rules", ""), ("m.room.name", ""),
    ("m.room.avatar", ""), ("m.room.canonical_alias", ""), ("m.room.encryption", ""),
    ("m.room.topic", ""),
)


def stripped_state(txn: Txn, room_id: str, user_id: str,
                   member_event_id: str) -> list[dict[str, Any]]:
    keys = list(STRIPPED_STATE)
    member = event_store.get_event(txn, member_event_id)
    # An invite from another server carries the room's state as that server sent it
    # (services/federation_membership.py): this server may hold none of the room's.
    given = ((member or {}).get("unsigned") or {}).get("invite_room_state")
    if isinstance(given, list) and member is not None:
        own = {k: member[k] for k in ("type", "state_key", "content", "sender", "event_id",
                                      "origin_server_ts")}
        return [e for e in given if (e.get("type"), e.get("state_key")) !=
                ("m.room.member", member["state_key"])] + [own]
    if member is not None and member["sender"] != user_id:
        keys.append(("m.room.member", member["sender"]))
    state = event_store.get_current_state(txn, room_id, keys)
    events = [
        {k: e[k] for k in ("type", "state_key", "content", "sender")}
        for e in state.values()
    ]
    if member is not None:
        own = {k: member[k] for k in ("type", "state_key", "content", "sender")}
        own["event_id"] = member["event_id"]
        own["origin_server_ts"] = member["origin_server_ts"]
        events.append(own)
    return events

"""Events as they cross to other servers and back: the stored copy carries its `event_id`
(and a v12 create event its derived `room_id`), which the PDU format does not; a received
PDU gets both back, computed, never believed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from veche.core.events import EventFormatError, compute_event_id, room_id_from_create_event_id
from veche.core.room_versions import RoomVersion

STRIPPED_KEYS = ("type", "state_key", "content", "sender")


def is_v12_create(event: Mapping[str, Any], rv: RoomVersion) -> bool:
    return (rv.room_id_is_create_event_hash and event.get("type") == "m.room.create"
            and event.get("state_key") == "")


def pdu_for_federation(event: Mapping[str, Any], rv: RoomVersion) -> dict[str, Any]:
    """The PDU to send: no event_id (v4+ IDs are hashes), no unsigned (ours, not signed),
    and for a v12 create event no room_id (the spec derives it from the event ID)."""
    pdu = {k: v for k, v in event.items() if k not in ("event_id", "unsigned")}
    if is_v12_create(event, rv):
        pdu.pop("room_id", None)
    return pdu


def event_from_federation(pdu: Mapping[str, Any], rv: RoomVersion) -> dict[str, Any]:
    """The stored form of a received PDU: its event ID computed; a v12 create event's room
    ID derived. Raises EventFormatError for something that is no PDU object."""
    if not isinstance(pdu, Mapping):
        raise EventFormatError("a PDU must be an object")
    event = {k: v for k, v in pdu.items() if k not in ("event_id", "unsigned")}
    for key in ("type", "sender"):
        if not isinstance(event.get(key), str):
            raise EventFormatError(f"PDU without a string {key}")
    if not isinstance(event.get("content"), dict):
        raise EventFormatError("PDU without a content object")
    if is_v12_create(event, rv) and "room_id" in event:
        raise EventFormatError("a v12 create event has no room_id")
    event_id = compute_event_id(event, rv)
    if is_v12_create(event, rv):
        event["room_id"] = room_id_from_create_event_id(event_id)
    elif not isinstance(event.get("room_id"), str):
        raise EventFormatError("PDU without a room_id")
    event["event_id"] = event_id
    return event


def stripped_state(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Client-server "stripped state" of full events (or of already stripped ones)."""
    return [{k: e[k] for k in STRIPPED_KEYS if k in e} for e in events
            if isinstance(e, Mapping) and isinstance(e.get("type"), str)
            and isinstance(e.get("state_key"), str)]

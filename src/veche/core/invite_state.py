"""The `invite_room_state` of an incoming v2 invite (server-server API "Inviting to a room",
v1.16): it must hold the room's `m.room.create` event, every entry formatted as a PDU of the
room's version, signed, and of the invite's room (a v12 create event's room ID being derived
from its event ID).

Entries that are plainly stripped state (no `signatures`, no `hashes`) other than the create
event are let through as the hints they are: Synapse 1.163 sends exactly that, the create
event as a PDU and the rest stripped (synapse/events/utils.py strip_event: "TODO: Implement
the rest of MSC4311"), and refusing it would refuse every invite from it. Signatures need
keys, so they are the caller's to check, on the PDUs this returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from veche.core.events import EventFormatError, check_content_hash
from veche.core.federation_pdus import event_from_federation
from veche.core.pdu import PduError, check_pdu_format
from veche.core.room_versions import RoomVersion


class InviteStateError(ValueError):
    pass


def _is_create(entry: Mapping[str, Any]) -> bool:
    return entry.get("type") == "m.room.create" and entry.get("state_key") == ""


def invite_state_pdus(rv: RoomVersion, room_id: str, entries: object) -> list[dict[str, Any]]:
    """The entries that are PDUs, in their stored form (event ID computed, a v12 create's
    room ID derived), the create event among them. Raises InviteStateError for a missing
    create event, an entry that is no PDU of `rv`, one whose content fails its hash, or one
    of another room."""
    if not isinstance(entries, list):
        raise InviteStateError("invite_room_state must be a list of events")
    pdus: list[dict[str, Any]] = []
    create_seen = False
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise InviteStateError("invite_room_state entries must be objects")
        is_create = _is_create(entry)
        if not is_create and "signatures" not in entry and "hashes" not in entry:
            continue
        name = f"{entry.get('type')!r} in invite_room_state"
        try:
            check_pdu_format(rv, entry, limits=False)
            event = event_from_federation(entry, rv)
        except (PduError, EventFormatError) as e:
            raise InviteStateError(f"{name} is no PDU of room version {rv.identifier}: {e}") from None
        # A redacted event (an avatar taken down) fails its content hash and is still the
        # room's state: only the create event, which the room's ID rests on, must pass.
        if is_create and not check_content_hash(entry):
            raise InviteStateError(f"{name} does not match its content hash")
        if event["room_id"] != room_id:
            raise InviteStateError(f"{name} is of another room ({event['room_id']})")
        if is_create:
            if event["content"].get("room_version", "1") != rv.identifier:
                raise InviteStateError("The create event in invite_room_state is of another room version")
            create_seen = True
        pdus.append(event)
    if not create_seen:
        raise InviteStateError("invite_room_state lacks the room's m.room.create event")
    return pdus

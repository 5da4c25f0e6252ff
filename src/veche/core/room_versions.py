"""Room versions this server speaks, and the flags that distinguish them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoomVersion:
    identifier: str
    # v11+: redaction keeps all of m.room.create content, `invite` in power levels, etc.
    updated_redaction_rules: bool
    # v10 create events carry content.creator; v11+ use the sender.
    create_has_creator_field: bool
    # v12: room ID is the create event's reference hash; creators have infinite power.
    room_id_is_create_event_hash: bool
    creators_have_infinite_power: bool
    create_event_in_auth_events: bool


KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    "10": RoomVersion("10", False, True, False, False, True),
    "11": RoomVersion("11", True, False, False, False, True),
    "12": RoomVersion("12", True, False, True, True, False),
}
DEFAULT_ROOM_VERSION = "12"

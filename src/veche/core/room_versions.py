"""Room versions this server speaks (10, 11 and 12), and the flags that distinguish them.

Each flag names the spec change it captures so that the protocol code branches on the
behaviour, never on the version string.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RoomVersion:
    identifier: str
    # v11 redaction algorithm: m.room.create keeps all content, power levels keep `invite`,
    # m.room.redaction keeps `redacts`, third_party_invite.signed survives, and the top-level
    # `origin`, `membership` and `prev_state` are no longer protected.
    updated_redaction_rules: bool
    # v1-10: m.room.create content must carry `creator`, which names the creator.
    create_has_creator_field: bool
    # v12: the room ID is the create event's ID with the `!` sigil; the create event has none.
    room_id_is_create_event_hash: bool
    # v12: the create event's sender and `additional_creators` have infinite power.
    creators_have_infinite_power: bool
    # v1-11: the create event is selected into every other event's auth_events.
    create_event_in_auth_events: bool
    # v11+: m.room.redaction carries `redacts` in content rather than at the top level.
    redacts_in_content: bool
    # v10+: power level values must be JSON integers (no strings, no floats).
    enforce_int_power_levels: bool
    # v6+: events must be valid Canonical JSON (integers only, within +-(2**53 - 1)).
    strict_canonical_json: bool
    # v4+: event IDs are the URL-safe base64 reference hash, without a domain.
    event_id_is_reference_hash: bool
    # v7+ knock, v8+ restricted, v10+ knock_restricted join rules.
    knock_join_rule: bool
    restricted_join_rule: bool
    knock_restricted_join_rule: bool
    # v12 state resolution: the full conflicted set also holds the conflicted state subgraph,
    # and the first iterative auth checks start from an empty state, not the unconflicted map.
    state_res_conflicted_subgraph: bool
    # Invites v2 (spec v1.16): an invite whose invite_room_state lacks the create event as a
    # signed PDU of this room is refused (M_INVALID_PARAM); v1-11 servers only warn, as the
    # spec asks while the ecosystem migrates.
    invite_room_state_checked: bool


ROOM_VERSION_10 = RoomVersion(
    identifier="10",
    updated_redaction_rules=False,
    create_has_creator_field=True,
    room_id_is_create_event_hash=False,
    creators_have_infinite_power=False,
    create_event_in_auth_events=True,
    redacts_in_content=False,
    enforce_int_power_levels=True,
    strict_canonical_json=True,
    event_id_is_reference_hash=True,
    knock_join_rule=True,
    restricted_join_rule=True,
    knock_restricted_join_rule=True,
    state_res_conflicted_subgraph=False,
    invite_room_state_checked=False,
)
ROOM_VERSION_11 = replace(
    ROOM_VERSION_10,
    identifier="11",
    updated_redaction_rules=True,
    create_has_creator_field=False,
    redacts_in_content=True,
)
ROOM_VERSION_12 = replace(
    ROOM_VERSION_11,
    identifier="12",
    room_id_is_create_event_hash=True,
    creators_have_infinite_power=True,
    create_event_in_auth_events=False,
    state_res_conflicted_subgraph=True,
    invite_room_state_checked=True,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    rv.identifier: rv for rv in (ROOM_VERSION_10, ROOM_VERSION_11, ROOM_VERSION_12)
}
DEFAULT_ROOM_VERSION = "12"

"""The authorisation rules, one table row per numbered rule.

The main table follows the v11 numbering and runs against v10, v11 and v12 (v12 shifts every
rule from 2 on by one, and 9.4+ by two levels); each row says whether the spec allows the
event or which rule rejects it. Separate tables cover rule 1 per version, the auth_events
rules, and what v12 changed (room ID is the create hash, infinite-power creators).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from canonicaljson import encode_canonical_json
from nacl.signing import SigningKey
from unpaddedbase64 import encode_base64

from veche.core.auth import (
    INFINITE,
    AuthError,
    auth_types_for_event,
    can_redact,
    check_auth_events,
    check_auth_rules,
    get_required_power_level_for_event,
    get_user_power_level,
    room_creators,
)
from veche.core.events import compute_event_id, room_id_from_create_event_id
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

V10, V11, V12 = (KNOWN_ROOM_VERSIONS[v] for v in ("10", "11", "12"))
ALICE, BOB, CAROL, DAVE = "@alice:a.test", "@bob:a.test", "@carol:a.test", "@dave:a.test"
MALLORY = "@mallory:b.test"
Event = dict[str, Any]
State = dict[tuple[str, str], Event]

IS_KEY = SigningKey(b"\x01" * 32)  # an identity server's key for third-party invites
IS_PUBLIC = encode_base64(bytes(IS_KEY.verify_key))


class Room:
    """Builds events and states for one room of a given version, created by ALICE."""

    def __init__(self, rv: RoomVersion, **create_content: Any) -> None:
        self.rv = rv
        content = {"room_version": rv.identifier, **create_content}
        if rv.create_has_creator_field:
            content.setdefault("creator", ALICE)
        create: Event = {"type": "m.room.create", "state_key": "", "sender": ALICE,
                         "content": content, "prev_events": [], "auth_events": [], "depth": 1,
                         "origin_server_ts": 1}
        if rv.room_id_is_create_event_hash:
            create["event_id"] = compute_event_id(create, rv)
            self.room_id = room_id_from_create_event_id(create["event_id"])
        else:
            create["room_id"] = self.room_id = "!room:a.test"
            create["event_id"] = compute_event_id(create, rv)
        self.create = create

    def ev(self, etype: str, sender: str, content: dict[str, Any],
           state_key: str | None = None, **extra: Any) -> Event:
        event: Event = {"type": etype, "sender": sender, "content": content,
                        "room_id": self.room_id, "prev_events": ["$prev"], "auth_events": [],
                        "depth": 5, "origin_server_ts": 2}
        if state_key is not None:
            event["state_key"] = state_key
        event.update(extra)
        return event

    def member(self, user: str, membership: str, sender: str | None = None,
               **content: Any) -> Event:
        return self.ev("m.room.member", sender or user, {"membership": membership, **content}, user)

    def power_levels(self, sender: str = ALICE, users: dict[str, Any] | None = None,
                     **levels: Any) -> Event:
        everyone = dict(users or {})
        if not self.rv.creators_have_infinite_power:
            everyone.setdefault(ALICE, 100)
        return self.ev("m.room.power_levels", sender, {
            "users": everyone, "users_default": 0, "events_default": 0, "state_default": 50,
            "ban": 50, "kick": 50, "redact": 50, "invite": 0, **levels}, "")

    def state(self, join_rule: str = "invite", members: dict[str, str] | None = None,
              users: dict[str, int] | None = None, power_levels: bool = True,
              **levels: Any) -> State:
        state: State = {("m.room.create", ""): self.create}
        if power_levels:
            state[("m.room.power_levels", "")] = self.power_levels(users=users, **levels)
        state[("m.room.join_rules", "")] = self.ev(
            "m.room.join_rules", ALICE, {"join_rule": join_rule}, "")
        for user, membership in {ALICE: "join", **(members or {})}.items():
            state[("m.room.member", user)] = self.member(user, membership)
        return state

    def third_party_invite(self, sender: str = BOB, token: str = "tok", **content: Any) -> Event:
        return self.ev("m.room.third_party_invite", sender,
                       {"display_name": "c...@e.test", "public_key": IS_PUBLIC, **content}, token)


def signed_block(mxid: str = CAROL, token: str = "tok", key: SigningKey = IS_KEY) -> dict[str, Any]:
    signed: dict[str, Any] = {"mxid": mxid, "token": token}
    signature = key.sign(encode_canonical_json(signed)).signature
    return {**signed, "signatures": {"id.test": {"ed25519:0": encode_base64(signature)}}}


def tpi_member(r: Room, signed: Any = None, **invite: Any) -> Event:
    third_party = {"display_name": "c...@e.test", **invite}
    if signed is not None:
        third_party["signed"] = signed
    return r.member(CAROL, "invite", sender=BOB, third_party_invite=third_party)


def tpi_state(r: Room, **invite_content: Any) -> State:
    state = r.state(members={BOB: "join"})
    state[("m.room.third_party_invite", "tok")] = r.third_party_invite(**invite_content)
    return state


def v12_rule(rule: str) -> str:
    """v12 inserts rule 2 and rule 10.4, renumbering what follows."""
    if rule.startswith("1."):
        return rule
    parts = [int(p) for p in rule.split(".")]
    parts[0] += 1 if parts[0] >= 2 else 0
    if parts[0] == 10 and len(parts) > 1 and parts[1] >= 4:
        parts[1] += 1
    return ".".join(map(str, parts))


@dataclass
class Case:
    name: str
    build: Callable[[Room], tuple[Event, State]]
    rejected_by: str | None  # None: allowed
    create: dict[str, Any] = field(default_factory=dict)


ALLOW = None
MOD = {BOB: 50}

V11_TABLE = [
    # 2. auth events / state
    Case("2.4 no m.room.create in the state",
         lambda r: (r.ev("m.room.message", ALICE, {}), {}), "2.4"),
    Case("2.5 a state event from another room",
         lambda r: (r.ev("m.room.message", ALICE, {}),
                    {**r.state(), ("m.room.member", ALICE): {**r.member(ALICE, "join"),
                                                             "room_id": "!other:a.test"}}),
         "2.5"),
    # 3. m.federate
    Case("3 m.federate false, sender on another server",
         lambda r: (r.member(MALLORY, "join"), r.state("public")), "3",
         create={"m.federate": False}),
    Case("3 m.federate false, sender on the creator's server",
         lambda r: (r.member(BOB, "join"), r.state("public")), ALLOW,
         create={"m.federate": False}),
    Case("3 m.federate true, sender on another server",
         lambda r: (r.member(MALLORY, "join"), r.state("public")), ALLOW,
         create={"m.federate": True}),
    # 4.1
    Case("4.1 member event without membership",
         lambda r: (r.ev("m.room.member", BOB, {}, BOB), r.state("public")), "4.1"),
    Case("4.1 member event without state_key",
         lambda r: (r.ev("m.room.member", BOB, {"membership": "join"}), r.state("public")), "4.1"),
    # 4.3 join
    Case("4.3.1 creator's join right after the create event",
         lambda r: ({**r.member(ALICE, "join"), "prev_events": [r.create["event_id"]]},
                    {("m.room.create", ""): r.create}), ALLOW),
    Case("4.3.1 someone else's join right after the create event falls through",
         lambda r: ({**r.member(BOB, "join"), "prev_events": [r.create["event_id"]]},
                    {("m.room.create", ""): r.create}), "4.3.4"),
    Case("4.3.2 join with sender != state_key",
         lambda r: (r.member(BOB, "join", sender=ALICE), r.state("public")), "4.3.2"),
    Case("4.3.3 banned user joins a public room",
         lambda r: (r.member(BOB, "join"), r.state("public", {BOB: "ban"})), "4.3.3"),
    Case("4.3.4 invite room, invited",
         lambda r: (r.member(BOB, "join"), r.state("invite", {BOB: "invite"})), ALLOW),
    Case("4.3.4 invite room, already joined (profile change)",
         lambda r: (r.member(BOB, "join"), r.state("invite", {BOB: "join"})), ALLOW),
    Case("4.3.4 invite room, not invited",
         lambda r: (r.member(BOB, "join"), r.state("invite")), "4.3.4"),
    Case("4.3.4 knock room, knocked but not invited",
         lambda r: (r.member(BOB, "join"), r.state("knock", {BOB: "knock"})), "4.3.4"),
    Case("4.3.5.1 restricted room, invited",
         lambda r: (r.member(BOB, "join"), r.state("restricted", {BOB: "invite"})), ALLOW),
    Case("4.3.5.2 restricted room, no authorising user",
         lambda r: (r.member(BOB, "join"), r.state("restricted")), "4.3.5.2"),
    Case("4.3.5.2 restricted room, authoriser not joined",
         lambda r: (r.member(BOB, "join", join_authorised_via_users_server=CAROL),
                    r.state("restricted", {CAROL: "leave"})), "4.3.5.2"),
    Case("4.3.5.2 restricted room, authoriser below the invite level",
         lambda r: (r.member(BOB, "join", join_authorised_via_users_server=CAROL),
                    r.state("restricted", {CAROL: "join"}, invite=10)), "4.3.5.2"),
    Case("4.3.5.3 restricted room, authorised by a joined member who can invite",
         lambda r: (r.member(BOB, "join", join_authorised_via_users_server=CAROL),
                    r.state("restricted", {CAROL: "join"})), ALLOW),
    Case("4.3.5.3 knock_restricted room, authorised",
         lambda r: (r.member(BOB, "join", join_authorised_via_users_server=CAROL),
                    r.state("knock_restricted", {CAROL: "join"})), ALLOW),
    Case("4.3.6 public room",
         lambda r: (r.member(BOB, "join"), r.state("public")), ALLOW),
    Case("4.3.7 private join rule",
         lambda r: (r.member(BOB, "join"), r.state("private")), "4.3.7"),
    # 4.4 invite, third-party
    Case("4.4.1.1 third-party invite for a banned target",
         lambda r: (tpi_member(r, signed_block()),
                    {**tpi_state(r), ("m.room.member", CAROL): r.member(CAROL, "ban", ALICE)}),
         "4.4.1.1"),
    Case("4.4.1.2 third_party_invite without signed",
         lambda r: (tpi_member(r), tpi_state(r)), "4.4.1.2"),
    Case("4.4.1.3 signed without token",
         lambda r: (tpi_member(r, {"mxid": CAROL}), tpi_state(r)), "4.4.1.3"),
    Case("4.4.1.4 signed.mxid is not the state_key",
         lambda r: (tpi_member(r, signed_block(mxid=DAVE)), tpi_state(r)), "4.4.1.4"),
    Case("4.4.1.5 no m.room.third_party_invite for the token",
         lambda r: (tpi_member(r, signed_block(token="other")), tpi_state(r)), "4.4.1.5"),
    Case("4.4.1.6 invite sent by someone other than the third_party_invite's sender",
         lambda r: (tpi_member(r, signed_block()), tpi_state(r, sender=ALICE)), "4.4.1.6"),
    Case("4.4.1.7.1 signature matches public_key",
         lambda r: (tpi_member(r, signed_block()), tpi_state(r)), ALLOW),
    Case("4.4.1.7.2 signature matches one of public_keys",
         lambda r: (tpi_member(r, signed_block()),
                    tpi_state(r, public_key=encode_base64(b"\x00" * 32),
                              public_keys=[{"public_key": IS_PUBLIC}])), ALLOW),
    Case("4.4.1.8 signature by another key",
         lambda r: (tpi_member(r, signed_block(key=SigningKey(b"\x02" * 32))), tpi_state(r)),
         "4.4.1.8"),
    Case("4.4.1.8 signed block tampered after signing",
         lambda r: (tpi_member(r, {**signed_block(), "extra": 1}), tpi_state(r)), "4.4.1.8"),
    # 4.4 invite, plain
    Case("4.4.2 inviter not joined",
         lambda r: (r.member(CAROL, "invite", sender=BOB), r.state(members={BOB: "invite"})),
         "4.4.2"),
    Case("4.4.3 target already joined",
         lambda r: (r.member(BOB, "invite", sender=ALICE), r.state(members={BOB: "join"})),
         "4.4.3"),
    Case("4.4.3 target banned",
         lambda r: (r.member(BOB, "invite", sender=ALICE), r.state(members={BOB: "ban"})),
         "4.4.3"),
    Case("4.4.4 inviter at the invite level",
         lambda r: (r.member(CAROL, "invite", sender=BOB),
                    r.state(members={BOB: "join"}, users={BOB: 10}, invite=10)), ALLOW),
    Case("4.4.5 inviter below the invite level",
         lambda r: (r.member(CAROL, "invite", sender=BOB),
                    r.state(members={BOB: "join"}, invite=10)), "4.4.5"),
    # 4.5 leave
    Case("4.5.1 leave while joined",
         lambda r: (r.member(BOB, "leave"), r.state(members={BOB: "join"})), ALLOW),
    Case("4.5.1 reject an invite",
         lambda r: (r.member(BOB, "leave"), r.state(members={BOB: "invite"})), ALLOW),
    Case("4.5.1 withdraw a knock",
         lambda r: (r.member(BOB, "leave"), r.state("knock", {BOB: "knock"})), ALLOW),
    Case("4.5.1 leave when not in the room",
         lambda r: (r.member(BOB, "leave"), r.state()), "4.5.1"),
    Case("4.5.1 banned user cannot unban themself",
         lambda r: (r.member(BOB, "leave"), r.state(members={BOB: "ban"})), "4.5.1"),
    Case("4.5.2 kicker not joined",
         lambda r: (r.member(CAROL, "leave", sender=BOB),
                    r.state(members={BOB: "leave", CAROL: "join"}, users=MOD)), "4.5.2"),
    Case("4.5.3 unban below the ban level",
         lambda r: (r.member(CAROL, "leave", sender=BOB),
                    r.state(members={BOB: "join", CAROL: "ban"}, users=MOD, ban=60)), "4.5.3"),
    Case("4.5.4 unban with kick and ban levels",
         lambda r: (r.member(CAROL, "leave", sender=BOB),
                    r.state(members={BOB: "join", CAROL: "ban"}, users=MOD)), ALLOW),
    Case("4.5.4 kick a lower user",
         lambda r: (r.member(CAROL, "leave", sender=BOB),
                    r.state(members={BOB: "join", CAROL: "join"}, users=MOD)), ALLOW),
    Case("4.5.5 kick an equal user",
         lambda r: (r.member(CAROL, "leave", sender=BOB),
                    r.state(members={BOB: "join", CAROL: "join"}, users={BOB: 50, CAROL: 50})),
         "4.5.5"),
    Case("4.5.5 kick below the kick level",
         lambda r: (r.member(CAROL, "leave", sender=BOB),
                    r.state(members={BOB: "join", CAROL: "join"}, users={BOB: 40})), "4.5.5"),
    # 4.6 ban
    Case("4.6.1 banner not joined",
         lambda r: (r.member(CAROL, "ban", sender=BOB),
                    r.state(members={BOB: "invite"}, users=MOD)), "4.6.1"),
    Case("4.6.2 ban a lower user, even one not in the room",
         lambda r: (r.member(CAROL, "ban", sender=BOB), r.state(members={BOB: "join"}, users=MOD)),
         ALLOW),
    Case("4.6.3 ban an equal user",
         lambda r: (r.member(CAROL, "ban", sender=BOB),
                    r.state(members={BOB: "join"}, users={BOB: 50, CAROL: 50})), "4.6.3"),
    Case("4.6.3 ban below the ban level",
         lambda r: (r.member(CAROL, "ban", sender=BOB),
                    r.state(members={BOB: "join"}, users={BOB: 40})), "4.6.3"),
    # 4.7 knock
    Case("4.7.1 knock on an invite-only room",
         lambda r: (r.member(BOB, "knock"), r.state("invite")), "4.7.1"),
    Case("4.7.1 knock on a public room",
         lambda r: (r.member(BOB, "knock"), r.state("public")), "4.7.1"),
    Case("4.7.2 knock on someone else's behalf",
         lambda r: (r.member(BOB, "knock", sender=ALICE), r.state("knock")), "4.7.2"),
    Case("4.7.3 knock",
         lambda r: (r.member(BOB, "knock"), r.state("knock")), ALLOW),
    Case("4.7.3 knock on knock_restricted after leaving",
         lambda r: (r.member(BOB, "knock"), r.state("knock_restricted", {BOB: "leave"})), ALLOW),
    Case("4.7.4 invited user knocks",
         lambda r: (r.member(BOB, "knock"), r.state("knock", {BOB: "invite"})), "4.7.4"),
    Case("4.7.4 banned user knocks",
         lambda r: (r.member(BOB, "knock"), r.state("knock", {BOB: "ban"})), "4.7.4"),
    # 4.8
    Case("4.8 unknown membership",
         lambda r: (r.member(BOB, "wander"), r.state("public")), "4.8"),
    # 5
    Case("5 message from a user who is not joined",
         lambda r: (r.ev("m.room.message", BOB, {}), r.state(members={BOB: "invite"})), "5"),
    Case("5 message from a joined user",
         lambda r: (r.ev("m.room.message", BOB, {}), r.state(members={BOB: "join"})), ALLOW),
    # 6
    Case("6.1 third_party_invite at the invite level",
         lambda r: (r.third_party_invite(), r.state(members={BOB: "join"})), ALLOW),
    Case("6.1 third_party_invite below the invite level",
         lambda r: (r.third_party_invite(), r.state(members={BOB: "join"}, invite=10)), "6.1"),
    Case("6.1 third_party_invite ignores the required power level for its type",
         lambda r: (r.third_party_invite(), r.state(members={BOB: "join"},
                                                    events={"m.room.third_party_invite": 99})),
         ALLOW),
    # 7
    Case("7 message below events_default",
         lambda r: (r.ev("m.room.message", BOB, {}),
                    r.state(members={BOB: "join"}, events_default=10)), "7"),
    Case("7 message below its events entry",
         lambda r: (r.ev("m.room.message", BOB, {}),
                    r.state(members={BOB: "join"}, events={"m.room.message": 1})), "7"),
    Case("7 state event below state_default",
         lambda r: (r.ev("m.room.topic", BOB, {"topic": "t"}, ""), r.state(members={BOB: "join"})),
         "7"),
    Case("7 state event at state_default",
         lambda r: (r.ev("m.room.topic", BOB, {"topic": "t"}, ""),
                    r.state(members={BOB: "join"}, users=MOD)), ALLOW),
    Case("7 state event with no power levels: state_default is 50",
         lambda r: (r.ev("m.room.topic", BOB, {"topic": "t"}, ""),
                    r.state(members={BOB: "join"}, power_levels=False)), "7"),
    Case("7 redaction governed by events, not the redact level",
         lambda r: (r.ev("m.room.redaction", BOB, {"redacts": "$x"}),
                    r.state(members={BOB: "join"}, redact=100)), ALLOW),
    # 8
    Case("8 state_key naming another user",
         lambda r: (r.ev("m.custom", BOB, {}, ALICE), r.state(members={BOB: "join"}, users=MOD)),
         "8"),
    Case("8 state_key naming the sender",
         lambda r: (r.ev("m.custom", BOB, {}, BOB), r.state(members={BOB: "join"}, users=MOD)),
         ALLOW),
    # 9 power levels: shape
    Case("9.1 string level",
         lambda r: (r.power_levels(ban="50"), r.state()), "9.1"),
    Case("9.1 float level",
         lambda r: (r.power_levels(kick=50.0), r.state()), "9.1"),
    Case("9.1 boolean level",
         lambda r: (r.power_levels(invite=True), r.state()), "9.1"),
    Case("9.2 events value not an integer",
         lambda r: (r.power_levels(events={"m.room.name": "50"}), r.state()), "9.2"),
    Case("9.2 notifications not an object",
         lambda r: (r.power_levels(notifications=50), r.state()), "9.2"),
    Case("9.3 users key not a user ID",
         lambda r: (r.power_levels(users={"bob": 10}), r.state()), "9.3"),
    Case("9.3 users value not an integer",
         lambda r: (r.power_levels(users={BOB: "10"}), r.state()), "9.3"),
    Case("9.4 first power levels event",
         lambda r: (r.power_levels(users={BOB: 50}, ban=100),
                    r.state(power_levels=False)), ALLOW),
    # 9 power levels: changes, by a moderator at 60
    Case("9.5.1 change a level that is above the sender's",
         lambda r: (r.power_levels(BOB, users={BOB: 60}, ban=50),
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0, ban=70)),
         "9.5.1"),
    Case("9.5.1 remove a level that is above the sender's",
         lambda r: ({**r.power_levels(BOB, users={BOB: 60}), "content": {
                        k: v for k, v in r.power_levels(BOB, users={BOB: 60})["content"].items()
                        if k != "ban"}},
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0, ban=70)),
         "9.5.1"),
    Case("9.5.2 raise a level above the sender's",
         lambda r: (r.power_levels(BOB, users={BOB: 60}, kick=70),
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0)), "9.5.2"),
    Case("9.5 raise a level up to the sender's",
         lambda r: (r.power_levels(BOB, users={BOB: 60}, kick=60),
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0)), ALLOW),
    Case("9.6.1 change an events entry above the sender's",
         lambda r: (r.power_levels(BOB, users={BOB: 60}, events={"m.x": 10}),
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0,
                            events={"m.x": 70})), "9.6.1"),
    Case("9.6.1 remove a notifications entry above the sender's",
         lambda r: (r.power_levels(BOB, users={BOB: 60}, notifications={}),
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0,
                            notifications={"room": 70})), "9.6.1"),
    Case("9.7.1 add an events entry above the sender's",
         lambda r: (r.power_levels(BOB, users={BOB: 60}, events={"m.x": 61}),
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0)), "9.7.1"),
    Case("9.7 add an events entry at the sender's level",
         lambda r: (r.power_levels(BOB, users={BOB: 60}, events={"m.x": 60}),
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0)), ALLOW),
    Case("9.8.1 demote a user at the sender's level",
         lambda r: (r.power_levels(BOB, users={BOB: 60, CAROL: 10}),
                    r.state(members={BOB: "join"}, users={BOB: 60, CAROL: 60}, state_default=0)),
         "9.8.1"),
    Case("9.8.1 remove a user above the sender's level",
         lambda r: (r.power_levels(BOB, users={BOB: 60}),
                    r.state(members={BOB: "join"}, users={BOB: 60, CAROL: 70}, state_default=0)),
         "9.8.1"),
    Case("9.8 demote oneself",
         lambda r: (r.power_levels(BOB, users={BOB: 10}),
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0)), ALLOW),
    Case("9.8 demote a lower user",
         lambda r: (r.power_levels(BOB, users={BOB: 60, CAROL: 0}),
                    r.state(members={BOB: "join"}, users={BOB: 60, CAROL: 59}, state_default=0)),
         ALLOW),
    Case("9.9.1 promote a user above the sender's level",
         lambda r: (r.power_levels(BOB, users={BOB: 60, CAROL: 61}),
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0)), "9.9.1"),
    Case("9.10 promote a user to the sender's level",
         lambda r: (r.power_levels(BOB, users={BOB: 60, CAROL: 60}),
                    r.state(members={BOB: "join"}, users={BOB: 60}, state_default=0)), ALLOW),
    # 10
    Case("10 any other event by a joined user with the level",
         lambda r: (r.ev("m.room.name", ALICE, {"name": "n"}, ""), r.state()), ALLOW),
]


def expected_rule(rv: RoomVersion, rule: str) -> str:
    if not rv.room_id_is_create_event_hash:
        return rule
    # v12 has no "no create event" rule 2.4; without it rule 2 cannot hold.
    return "2" if rule == "2.4" else v12_rule(rule)


def run(rv: RoomVersion, case: Case) -> None:
    r = Room(rv, **case.create)
    event, state = case.build(r)
    if case.rejected_by is None:
        check_auth_rules(rv, event, state)
        return
    with pytest.raises(AuthError) as raised:
        check_auth_rules(rv, event, state)
    assert raised.value.rule == expected_rule(rv, case.rejected_by), str(raised.value)


@pytest.mark.parametrize("rv", [V10, V11, V12], ids=lambda rv: f"v{rv.identifier}")
@pytest.mark.parametrize("case", V11_TABLE, ids=lambda c: c.name)
def test_auth_rules(rv: RoomVersion, case: Case) -> None:
    run(rv, case)


def create_event(rv: RoomVersion, **overrides: Any) -> Event:
    return {**Room(rv).create, **overrides}


def bare_create(rv: RoomVersion, **content: Any) -> Event:
    event = Room(rv).create
    return {**event, "content": {"room_version": rv.identifier, **content}}


# (rule, room version, create event, rejected_by)
CREATE_TABLE: list[tuple[str, RoomVersion, Callable[[], Event], str | None]] = [
    ("1.1 create with prev_events", V11, lambda: create_event(V11, prev_events=["$x"]), "1.1"),
    ("1.1 create with prev_events (v12)", V12, lambda: create_event(V12, prev_events=["$x"]), "1.1"),
    ("1.2 room_id domain differs from the sender's (v10)", V10,
     lambda: create_event(V10, room_id="!r:b.test"), "1.2"),
    ("1.2 room_id domain differs from the sender's (v11)", V11,
     lambda: create_event(V11, room_id="!r:b.test"), "1.2"),
    ("1.2 v12 create event with a room_id", V12,
     lambda: create_event(V12, room_id="!r:a.test"), "1.2"),
    ("1.3 unrecognised room_version", V11,
     lambda: bare_create(V11, room_version="999"), "1.3"),
    ("1.3 room_version not a string", V12,
     lambda: bare_create(V12, room_version=12), "1.3"),
    ("1.4 v10 create without creator", V10, lambda: bare_create(V10), "1.4"),
    ("1.4 v11 create needs no creator", V11, lambda: bare_create(V11), ALLOW),
    ("1.4 additional_creators not an array", V12,
     lambda: bare_create(V12, additional_creators=BOB), "1.4"),
    ("1.4 additional_creators with a non-user-ID", V12,
     lambda: bare_create(V12, additional_creators=[BOB, "bob"]), "1.4"),
    ("1.4 additional_creators with a non-string", V12,
     lambda: bare_create(V12, additional_creators=[1]), "1.4"),
    ("1.4 additional_creators ignored before v12", V11,
     lambda: bare_create(V11, additional_creators="junk"), ALLOW),
    ("1.5 valid v10 create", V10, lambda: create_event(V10), ALLOW),
    ("1.4 valid v11 create", V11, lambda: create_event(V11), ALLOW),
    ("1.5 valid v12 create with additional_creators", V12,
     lambda: bare_create(V12, additional_creators=[BOB, MALLORY]), ALLOW),
]


@pytest.mark.parametrize("rule,rv,build,rejected_by", CREATE_TABLE, ids=[r[0] for r in CREATE_TABLE])
def test_create_rules(rule: str, rv: RoomVersion, build: Callable[[], Event],
                      rejected_by: str | None) -> None:
    if rejected_by is None:
        check_auth_rules(rv, build(), {})
        return
    with pytest.raises(AuthError) as raised:
        check_auth_rules(rv, build(), {})
    assert raised.value.rule == rejected_by


# --- auth_events selection and rules 2.x / 3.x ------------------------------------------


def test_auth_types_for_a_message() -> None:
    r = Room(V11)
    assert auth_types_for_event(V11, r.ev("m.room.message", BOB, {})) == {
        ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", BOB)}
    assert auth_types_for_event(V12, r.ev("m.room.message", BOB, {})) == {
        ("m.room.power_levels", ""), ("m.room.member", BOB)}
    assert auth_types_for_event(V12, Room(V12).create) == set()


def test_auth_types_for_memberships() -> None:
    r = Room(V11)
    base = {("m.room.create", ""), ("m.room.power_levels", "")}
    assert auth_types_for_event(V11, r.member(BOB, "invite", sender=ALICE)) == base | {
        ("m.room.member", ALICE), ("m.room.member", BOB), ("m.room.join_rules", "")}
    assert auth_types_for_event(V11, r.member(BOB, "leave", sender=ALICE)) == base | {
        ("m.room.member", ALICE), ("m.room.member", BOB)}
    assert auth_types_for_event(V11, r.member(BOB, "join", join_authorised_via_users_server=CAROL)) \
        == base | {("m.room.member", BOB), ("m.room.join_rules", ""), ("m.room.member", CAROL)}
    assert auth_types_for_event(V11, tpi_member(r, signed_block())) == base | {
        ("m.room.member", BOB), ("m.room.member", CAROL), ("m.room.join_rules", ""),
        ("m.room.third_party_invite", "tok")}


AUTH_EVENTS_TABLE: list[tuple[str, RoomVersion, Callable[[Room], list[Event]], set[str], str | None]] = [
    ("2.1 duplicate power levels", V11,
     lambda r: [r.create, r.power_levels(), r.power_levels(), r.member(BOB, "join")], set(), "2.1"),
    ("2.2 join rules for a message", V11,
     lambda r: [r.create, r.state()[("m.room.join_rules", "")]], set(), "2.2"),
    ("2.3 a rejected auth event", V11,
     lambda r: [r.create, {**r.power_levels(), "event_id": "$bad"}], {"$bad"}, "2.3"),
    ("2.4 no create event", V11, lambda r: [r.member(BOB, "join")], set(), "2.4"),
    ("2.4 no create event (v10)", V10, lambda r: [r.member(BOB, "join")], set(), "2.4"),
    ("2.5 auth event from another room", V11,
     lambda r: [r.create, {**r.member(BOB, "join"), "room_id": "!o:a.test"}], set(), "2.5"),
    ("2 valid auth events", V11,
     lambda r: [r.create, r.power_levels(), r.member(BOB, "join")], set(), ALLOW),
    ("3.2 v12 create event among the auth events", V12,
     lambda r: [r.create, r.power_levels()], set(), "3.2"),
    ("3.1 v12 duplicate entries", V12,
     lambda r: [r.member(BOB, "join"), r.member(BOB, "join")], set(), "3.1"),
    ("3.5 v12 auth event from another room", V12,
     lambda r: [{**r.power_levels(), "room_id": "!o"}], set(), "3.5"),
    ("3 v12 valid auth events without the create event", V12,
     lambda r: [r.power_levels(), r.member(BOB, "join")], set(), ALLOW),
]


@pytest.mark.parametrize("rule,rv,build,rejected,rejected_by", AUTH_EVENTS_TABLE,
                         ids=[r[0] for r in AUTH_EVENTS_TABLE])
def test_auth_events_rules(rule: str, rv: RoomVersion, build: Callable[[Room], list[Event]],
                           rejected: set[str], rejected_by: str | None) -> None:
    r = Room(rv)
    event = r.ev("m.room.message", BOB, {})
    if rejected_by is None:
        check_auth_events(rv, event, build(r), rejected)
        return
    with pytest.raises(AuthError) as raised:
        check_auth_events(rv, event, build(r), rejected)
    assert raised.value.rule == rejected_by


# --- join_authorised_via_users_server signature (rule 4.2.1) ----------------------------


@pytest.mark.parametrize("signed_by_authoriser,allowed", [(True, True), (False, False)])
def test_join_authorisation_signature(signed_by_authoriser: bool, allowed: bool) -> None:
    r = Room(V11)
    event = r.member(BOB, "join", join_authorised_via_users_server=CAROL)
    state = r.state("restricted", {CAROL: "join"})
    asked: list[str] = []

    def is_signed_by(ev: dict[str, Any], server: str) -> bool:
        asked.append(server)
        return signed_by_authoriser

    if allowed:
        check_auth_rules(V11, event, state, is_signed_by=is_signed_by)
    else:
        with pytest.raises(AuthError) as raised:
            check_auth_rules(V11, event, state, is_signed_by=is_signed_by)
        assert raised.value.rule == "4.2.1"
    assert asked == ["a.test"]


# --- v12: room ID and creators -----------------------------------------------------------


def test_v12_rule_2_room_id_must_be_the_create_event_hash() -> None:
    r = Room(V12)
    event = r.ev("m.room.message", ALICE, {})
    check_auth_rules(V12, event, r.state())
    with pytest.raises(AuthError) as raised:
        check_auth_rules(V12, {**event, "room_id": "!elsewhere:a.test"}, r.state())
    assert raised.value.rule == "2"
    other_room = Room(V12, topic="different create event")
    with pytest.raises(AuthError) as raised:
        check_auth_rules(V12, event, {**r.state(), ("m.room.create", ""): other_room.create})
    assert raised.value.rule == "2"


def test_v12_create_event_id_is_computed_when_absent() -> None:
    r = Room(V12)
    create = {k: v for k, v in r.create.items() if k != "event_id"}
    check_auth_rules(V12, r.ev("m.room.message", ALICE, {}),
                     {**r.state(), ("m.room.create", ""): create})


V12_TABLE = [
    Case("creator outranks anyone: kick a user at the maximum level",
         lambda r: (r.member(CAROL, "leave", sender=ALICE),
                    r.state(members={CAROL: "join"}, users={CAROL: 2**53 - 1})), ALLOW),
    Case("additional creator outranks anyone: ban",
         lambda r: (r.member(CAROL, "ban", sender=BOB),
                    r.state(members={BOB: "join", CAROL: "join"}, users={CAROL: 100})), ALLOW,
         create={"additional_creators": [BOB]}),
    Case("a creator cannot be kicked, even by another creator",
         lambda r: (r.member(ALICE, "leave", sender=BOB),
                    r.state(members={BOB: "join"})), "5.5.5",
         create={"additional_creators": [BOB]}),
    Case("additional creator passes the required power level",
         lambda r: (r.ev("m.room.tombstone", BOB, {}, ""),
                    r.state(members={BOB: "join"}, events={"m.room.tombstone": 150})), ALLOW,
         create={"additional_creators": [BOB]}),
    Case("creator has infinite power with no power levels event",
         lambda r: (r.ev("m.room.tombstone", ALICE, {}, ""), r.state(power_levels=False)), ALLOW),
    Case("10.4 sender of the create event listed in users",
         lambda r: (r.power_levels(users={ALICE: 100}), r.state()), "10.4"),
    Case("10.4 additional creator listed in users",
         lambda r: (r.power_levels(users={BOB: 100}), r.state(members={BOB: "join"})), "10.4",
         create={"additional_creators": [BOB]}),
    Case("10.4 also on the first power levels event",
         lambda r: (r.power_levels(users={ALICE: 100}), r.state(power_levels=False)), "10.4"),
    Case("10.x creator may set any level",
         lambda r: (r.power_levels(users={BOB: 2**53 - 1}, ban=2**53 - 1),
                    r.state(users={BOB: 10})), ALLOW),
    Case("5.3.1 creator's join right after the create event",
         lambda r: ({**r.member(ALICE, "join"), "prev_events": [r.create["event_id"]]},
                    {("m.room.create", ""): r.create}), ALLOW),
    Case("5.3.1 additional creator's first join is not special",
         lambda r: ({**r.member(BOB, "join"), "prev_events": [r.create["event_id"]]},
                    {("m.room.create", ""): r.create}), "5.3.4",
         create={"additional_creators": [BOB]}),
]


@pytest.mark.parametrize("case", V12_TABLE, ids=lambda c: c.name)
def test_v12_creators(case: Case) -> None:
    r = Room(V12, **case.create)
    event, state = case.build(r)
    if case.rejected_by is None:
        check_auth_rules(V12, event, state)
        return
    with pytest.raises(AuthError) as raised:
        check_auth_rules(V12, event, state)
    assert raised.value.rule == case.rejected_by, str(raised.value)


def test_v11_creator_is_not_infinite_and_can_be_listed() -> None:
    r = Room(V11)
    check_auth_rules(V11, r.power_levels(users={ALICE: 100}), r.state())
    with pytest.raises(AuthError):
        check_auth_rules(V11, r.member(CAROL, "leave", sender=ALICE),
                         r.state(members={CAROL: "join"}, users={CAROL: 100}))


# --- Power level helpers -----------------------------------------------------------------


@pytest.mark.parametrize("rv,user,power_levels,expected", [
    (V10, ALICE, False, 100),
    (V10, BOB, False, 0),
    (V11, ALICE, False, 100),
    (V11, ALICE, True, 100),
    (V11, BOB, True, 0),
    (V11, CAROL, True, 25),
    (V12, ALICE, False, INFINITE),
    (V12, ALICE, True, INFINITE),
    (V12, BOB, False, 0),
    (V12, CAROL, True, 25),
])
def test_get_user_power_level(rv: RoomVersion, user: str, power_levels: bool,
                              expected: float) -> None:
    state = Room(rv).state(power_levels=power_levels, users={CAROL: 25})
    assert get_user_power_level(user, state, rv) == expected


def test_v10_creator_comes_from_content_creator() -> None:
    r = Room(V10, creator=BOB)
    assert room_creators(r.create, V10) == {BOB}
    assert get_user_power_level(BOB, r.state(power_levels=False), V10) == 100
    assert get_user_power_level(ALICE, r.state(power_levels=False), V10) == 0


def test_room_creators() -> None:
    r12 = Room(V12, additional_creators=[BOB, 7])
    assert room_creators(r12.create, V12) == {ALICE, BOB}
    assert room_creators(Room(V11, additional_creators=[BOB]).create, V11) == {ALICE}


def test_users_default_applies() -> None:
    r = Room(V11)
    assert get_user_power_level(BOB, r.state(users_default=7), V11) == 7


@pytest.mark.parametrize("event_type,is_state,content,expected", [
    ("m.room.message", False, {}, 0),
    ("m.room.topic", True, {}, 50),
    ("m.room.message", False, {"events_default": 5}, 5),
    ("m.room.topic", True, {"state_default": 20}, 20),
    ("m.room.topic", True, {"state_default": 20, "events": {"m.room.topic": 70}}, 70),
    ("m.room.message", False, {"events": {"m.room.message": 3}}, 3),
])
def test_required_power_level(event_type: str, is_state: bool, content: dict[str, Any],
                              expected: int) -> None:
    assert get_required_power_level_for_event(event_type, is_state, content) == expected


@pytest.mark.parametrize("sender,original,users,expected", [
    (BOB, MALLORY, {BOB: 50}, True),        # 1. at the redact level
    (BOB, MALLORY, {BOB: 49}, False),       # below it, and another server
    (MALLORY, "@other:b.test", {}, True),   # 2. same domain as the original sender
    (BOB, CAROL, {}, True),                 # 2. same domain, whatever the levels
])
def test_can_redact(sender: str, original: str, users: dict[str, int], expected: bool) -> None:
    state = Room(V11).state(users=users)
    assert can_redact(sender, original, state, V11) is expected

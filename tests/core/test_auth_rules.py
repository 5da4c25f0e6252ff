"""The authorisation rules, one table row per numbered rule (v11), plus the v12 differences.

Each row names the rule it exercises, builds an event against a room state, and says whether
the spec allows it.
"""

from __future__ import annotations

from typing import Any

import pytest

from veche.core.auth import (
    AuthError,
    auth_types_for_event,
    check_auth_rules,
    get_user_power_level,
)
from veche.core.room_versions import KNOWN_ROOM_VERSIONS

V10, V11, V12 = (KNOWN_ROOM_VERSIONS[v] for v in ("10", "11", "12"))
ALICE, BOB, CAROL, MALLORY = "@alice:a.test", "@bob:a.test", "@carol:a.test", "@mallory:b.test"
ROOM = "!room:a.test"


def ev(etype: str, sender: str, content: dict[str, Any], state_key: str | None = None,
       **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": etype, "sender": sender, "content": content,
                             "room_id": ROOM, "prev_events": ["$prev"], "event_id": f"${etype}{state_key}"}
    if state_key is not None:
        event["state_key"] = state_key
    event.update(extra)
    return event


def member(user: str, membership: str, sender: str | None = None, **content: Any) -> dict[str, Any]:
    return ev("m.room.member", sender or user, {"membership": membership, **content}, user)


def room_state(join_rule: str = "invite", members: dict[str, str] | None = None,
               users: dict[str, int] | None = None, create_extra: dict[str, Any] | None = None,
               **pl: Any) -> dict[tuple[str, str], dict[str, Any]]:
    state = {
        ("m.room.create", ""): ev("m.room.create", ALICE, {"room_version": "11", **(create_extra or {})}, "",
                                  event_id="$create"),
        ("m.room.power_levels", ""): ev("m.room.power_levels", ALICE, {
            "users": users if users is not None else {ALICE: 100}, "users_default": 0,
            "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
            "invite": 0, **pl}, ""),
        ("m.room.join_rules", ""): ev("m.room.join_rules", ALICE, {"join_rule": join_rule}, ""),
    }
    for user, membership in {ALICE: "join", **(members or {})}.items():
        state[("m.room.member", user)] = member(user, membership)
    return state


ALLOW, REJECT = True, False

# (rule, event, state, allowed)
V11_TABLE: list[tuple[str, dict[str, Any], dict[tuple[str, str], dict[str, Any]], bool]] = [
    ("1.1 create with prev_events", ev("m.room.create", ALICE, {}, "", prev_events=["$x"]), {}, REJECT),
    ("1.2 create room_id domain != sender domain",
     {**ev("m.room.create", ALICE, {}, "", prev_events=[]), "room_id": "!r:b.test"}, {}, REJECT),
    ("1.4 create allowed", ev("m.room.create", ALICE, {"room_version": "11"}, "", prev_events=[]), {}, ALLOW),
    ("2 no create event in state", ev("m.room.message", ALICE, {"body": "x"}), {}, REJECT),
    ("3 m.federate false blocks other servers",
     ev("m.room.message", MALLORY, {"body": "x"}),
     room_state("public", {MALLORY: "join"}, create_extra={"m.federate": False}), REJECT),
    ("4.1 member event without membership", ev("m.room.member", BOB, {}, BOB), room_state("public"), REJECT),
    ("4.2.1 creator's first join", {**member(ALICE, "join"), "prev_events": ["$create"]},
     {("m.room.create", ""): room_state()[("m.room.create", "")]}, ALLOW),
    ("4.2.2 join for someone else", member(BOB, "join", sender=ALICE), room_state("public"), REJECT),
    ("4.2.3 banned user joins", member(BOB, "join"), room_state("public", {BOB: "ban"}), REJECT),
    ("4.2.4 invite-only room, invited", member(BOB, "join"), room_state("invite", {BOB: "invite"}), ALLOW),
    ("4.2.4 invite-only room, not invited", member(BOB, "join"), room_state("invite"), REJECT),
    ("4.2.4 knock room, not invited", member(BOB, "join"), room_state("knock"), REJECT),
    ("4.2.5 restricted, authorised by a member who can invite",
     member(BOB, "join", join_authorised_via_users_server=ALICE), room_state("restricted"), ALLOW),
    ("4.2.5 restricted, authoriser not joined",
     member(BOB, "join", join_authorised_via_users_server=CAROL), room_state("restricted"), REJECT),
    ("4.2.5 restricted, authoriser cannot invite",
     member(BOB, "join", join_authorised_via_users_server=CAROL),
     room_state("restricted", {CAROL: "join"}, invite=50), REJECT),
    ("4.2.6 public room", member(BOB, "join"), room_state("public"), ALLOW),
    ("4.2.7 private join rule", member(BOB, "join"), room_state("private"), REJECT),
    ("4.3.2 invite from non-member", member(CAROL, "invite", sender=BOB), room_state(), REJECT),
    ("4.3.3 invite a joined user", member(BOB, "invite", sender=ALICE), room_state(members={BOB: "join"}), REJECT),
    ("4.3.3 invite a banned user", member(BOB, "invite", sender=ALICE), room_state(members={BOB: "ban"}), REJECT),
    ("4.3.4 invite with enough power", member(BOB, "invite", sender=ALICE), room_state(), ALLOW),
    ("4.3.5 invite below invite level", member(CAROL, "invite", sender=BOB),
     room_state(members={BOB: "join"}, invite=50), REJECT),
    ("4.4.1 leave own membership", member(BOB, "leave"), room_state(members={BOB: "join"}), ALLOW),
    ("4.4.1 reject own invite", member(BOB, "leave"), room_state(members={BOB: "invite"}), ALLOW),
    ("4.4.1 leave when not in room", member(BOB, "leave"), room_state(), REJECT),
    ("4.4.2 kick by non-member", member(CAROL, "leave", sender=BOB), room_state(members={CAROL: "join"}), REJECT),
    ("4.4.3 unban below ban level", member(CAROL, "leave", sender=BOB),
     room_state(members={BOB: "join", CAROL: "ban"}, users={ALICE: 100, BOB: 40}, kick=30), REJECT),
    ("4.4.4 kick by moderator", member(BOB, "leave", sender=ALICE), room_state(members={BOB: "join"}), ALLOW),
    ("4.4.5 kick a more powerful user", member(ALICE, "leave", sender=BOB),
     room_state(members={BOB: "join"}, users={ALICE: 100, BOB: 50}), REJECT),
    ("4.5.1 ban by non-member", member(CAROL, "ban", sender=BOB), room_state(), REJECT),
    ("4.5.2 ban by moderator", member(BOB, "ban", sender=ALICE), room_state(members={BOB: "join"}), ALLOW),
    ("4.5.3 ban below ban level", member(CAROL, "ban", sender=BOB),
     room_state(members={BOB: "join", CAROL: "join"}), REJECT),
    ("4.6.1 knock where the join rule is invite", member(BOB, "knock"), room_state("invite"), REJECT),
    ("4.6.2 knock for someone else", member(BOB, "knock", sender=CAROL), room_state("knock"), REJECT),
    ("4.6.3 knock", member(BOB, "knock"), room_state("knock"), ALLOW),
    ("4.6.4 knock when already invited", member(BOB, "knock"), room_state("knock", {BOB: "invite"}), REJECT),
    ("4.7 unknown membership", member(BOB, "dance"), room_state("public"), REJECT),
    ("5 sender not joined", ev("m.room.message", BOB, {"body": "x"}), room_state(), REJECT),
    ("8 message below events_default", ev("m.room.message", BOB, {"body": "x"}),
     room_state(members={BOB: "join"}, events_default=10), REJECT),
    ("8 state below state_default", ev("m.room.name", BOB, {"name": "x"}, ""),
     room_state(members={BOB: "join"}), REJECT),
    ("8 state with enough power", ev("m.room.name", ALICE, {"name": "x"}, ""), room_state(), ALLOW),
    ("9 state_key @other", ev("org.example", ALICE, {}, BOB), room_state(), REJECT),
    ("9 state_key @self", ev("org.example", ALICE, {}, ALICE), room_state(), ALLOW),
    ("10.1 power level not an integer", ev("m.room.power_levels", ALICE, {"users": {ALICE: 100}, "ban": "50"}, ""),
     room_state(), REJECT),
    ("10.2 events value not an integer",
     ev("m.room.power_levels", ALICE, {"users": {ALICE: 100}, "events": {"m.room.name": 50.5}}, ""),
     room_state(), REJECT),
    ("10.3 users key not a user ID", ev("m.room.power_levels", ALICE, {"users": {"alice": 100}}, ""),
     room_state(), REJECT),
    ("10.5 raise a level above one's own", ev("m.room.power_levels", BOB,
     {"users": {ALICE: 100, BOB: 50}, "ban": 60}, ""),
     room_state(members={BOB: "join"}, users={ALICE: 100, BOB: 50}), REJECT),
    ("10.6 demote a peer", ev("m.room.power_levels", BOB, {"users": {ALICE: 100, BOB: 50, CAROL: 0}}, ""),
     room_state(members={BOB: "join"}, users={ALICE: 100, BOB: 50, CAROL: 50}), REJECT),
    ("10.6 demote oneself", ev("m.room.power_levels", BOB, {"users": {ALICE: 100, BOB: 10}}, ""),
     room_state(members={BOB: "join"}, users={ALICE: 100, BOB: 50}), ALLOW),
    ("10 change a lower user's level", ev("m.room.power_levels", ALICE, {"users": {ALICE: 100, BOB: 50}}, ""),
     room_state(members={BOB: "join"}), ALLOW),
    ("11 message from a joined member", ev("m.room.message", ALICE, {"body": "hi"}), room_state(), ALLOW),
]


@pytest.mark.parametrize(("rule", "event", "state", "allowed"), V11_TABLE, ids=[r[0] for r in V11_TABLE])
def test_v11_rules(rule: str, event: dict[str, Any], state: dict[tuple[str, str], dict[str, Any]],
                   allowed: bool) -> None:
    if allowed:
        check_auth_rules(V11, event, state)
    else:
        with pytest.raises(AuthError):
            check_auth_rules(V11, event, state)


def test_v10_create_needs_creator() -> None:
    with pytest.raises(AuthError):
        check_auth_rules(V10, {**ev("m.room.create", ALICE, {}, "", prev_events=[])}, {})
    check_auth_rules(V10, ev("m.room.create", ALICE, {"creator": ALICE}, "", prev_events=[]), {})


def v12_state(**kw: Any) -> dict[tuple[str, str], dict[str, Any]]:
    state = room_state(**kw)
    create = dict(state[("m.room.create", "")])
    create.pop("room_id")
    create["content"] = {"room_version": "12", "additional_creators": [CAROL]}
    state[("m.room.create", "")] = create
    state[("m.room.power_levels", "")]["content"]["users"] = {BOB: 50}
    return state


def test_v12_create_must_not_have_room_id() -> None:
    with pytest.raises(AuthError):
        check_auth_rules(V12, ev("m.room.create", ALICE, {}, "", prev_events=[]), {})
    create = ev("m.room.create", ALICE, {"additional_creators": [CAROL]}, "", prev_events=[])
    del create["room_id"]
    check_auth_rules(V12, create, {})


def test_v12_additional_creators_must_be_user_ids() -> None:
    create = ev("m.room.create", ALICE, {"additional_creators": ["not-a-user"]}, "", prev_events=[])
    del create["room_id"]
    with pytest.raises(AuthError):
        check_auth_rules(V12, create, {})


def test_v12_creators_have_infinite_power() -> None:
    state = v12_state(members={BOB: "join", CAROL: "join"})
    assert get_user_power_level(ALICE, state, V12) == float("inf")
    assert get_user_power_level(CAROL, state, V12) == float("inf")
    assert get_user_power_level(BOB, state, V12) == 50
    # A creator may ban anyone; nobody may kick a creator.
    check_auth_rules(V12, member(BOB, "ban", sender=CAROL), state)
    with pytest.raises(AuthError):
        check_auth_rules(V12, member(ALICE, "leave", sender=BOB), state)


def test_v12_creators_cannot_be_listed_in_power_levels() -> None:
    state = v12_state()
    with pytest.raises(AuthError):
        check_auth_rules(V12, ev("m.room.power_levels", ALICE, {"users": {ALICE: 100}}, ""), state)
    check_auth_rules(V12, ev("m.room.power_levels", ALICE, {"users": {BOB: 60}}, ""), state)


def test_auth_events_selection() -> None:
    invite = member(BOB, "invite", sender=ALICE)
    expected = {("m.room.power_levels", ""), ("m.room.member", ALICE), ("m.room.member", BOB),
                ("m.room.join_rules", "")}
    assert auth_types_for_event(V11, invite) == expected | {("m.room.create", "")}
    assert auth_types_for_event(V12, invite) == expected
    assert auth_types_for_event(V11, ev("m.room.create", ALICE, {}, "")) == set()

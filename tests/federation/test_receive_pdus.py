"""PUT /send from another server: a remote user joins a public room on Veche and talks; the
transaction is idempotent and bounded; forged, tampered, unauthorised and ban-evading events
are dropped, redacted, rejected and soft-failed; PDUs for rooms Veche does not hold or from
servers not in the room are refused; gaps are filled from the sender. The test plays the
remote server (tests/federation/fake_origin.py)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess
from tests.federation.fake_origin import F1, FakeServer, SharedRoom, q
from tests.federation.pki import TestCA
from tests.sync_helpers import events_of, section
from veche.core.federation_pdus import pdu_for_federation


async def shared_room(http: aiohttp.ClientSession, veche: ServerProcess, origin: FakeServer,
                      version: str = "12", **create: Any) -> tuple[Client, SharedRoom]:
    """A public room made by a Veche user, joined by @bob of the fake server over /send."""
    alice = await Client(http, veche.base_url).register("alice")
    status, body = await alice.post("createRoom", {"preset": "public_chat",
                                                   "room_version": version, **create})
    assert status == 200, body
    room = await SharedRoom.of(alice, body["room_id"])
    bob = origin.user("bob")
    join_id, join = room.build(origin, bob, "m.room.member", {"membership": "join"}, bob)
    status, result = await origin.send(http, veche, [join])
    assert (status, result) == (200, {"pdus": {join_id: {}}}), veche.log()[-3000:]
    return alice, room


async def timeline(client: Client, room_id: str) -> list[dict[str, Any]]:
    status, page = await client.get(f"rooms/{q(room_id)}/messages", params={"dir": "b", "limit": "100"})
    assert status == 200, page
    return list(reversed(page["chunk"]))


async def texts(client: Client, room_id: str) -> list[str]:
    return [e["content"].get("body") for e in await timeline(client, room_id)
            if e["type"] == "m.room.message"]


async def fed_event(http: aiohttp.ClientSession, veche: ServerProcess, origin: FakeServer,
                    event_id: str) -> tuple[int, Any]:
    return await origin.request(http, veche, "GET", f"{F1}/event/{q(event_id)}")


@pytest.mark.parametrize("version", ["10", "12"])
async def test_remote_user_joins_and_talks_and_transactions_are_idempotent(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession, version: str) -> None:
    alice, room = await shared_room(http, veche, origin, version)
    bob = origin.user("bob")
    status, members = await alice.get(f"rooms/{q(room.room_id)}/joined_members")
    assert status == 200 and bob in members["joined"], members
    m1, p1 = room.build(origin, bob, "m.room.message", {"msgtype": "m.text", "body": "hello"})
    m2, p2 = room.build(origin, bob, "m.room.message", {"msgtype": "m.text", "body": "again"})
    status, result = await origin.send(http, veche, [p1, p2], txn_id="txn-1")
    assert (status, result) == (200, {"pdus": {m1: {}, m2: {}}})
    assert await texts(alice, room.room_id) == ["hello", "again"]
    # The same transaction again: the same answer, nothing stored twice; even with another
    # body, the first answer stands (a transaction ID is used once per origin).
    m3, p3 = room.build(origin, bob, "m.room.message", {"msgtype": "m.text", "body": "third"})
    for pdus in ([p1, p2], [p3]):
        assert await origin.send(http, veche, pdus, txn_id="txn-1") == (200, result)
    assert await texts(alice, room.room_id) == ["hello", "again"]
    assert await origin.send(http, veche, [p3]) == (200, {"pdus": {m3: {}}})
    # Known events sent again are fine and change nothing.
    assert await origin.send(http, veche, [p1]) == (200, {"pdus": {m1: {}}})
    assert await texts(alice, room.room_id) == ["hello", "again", "third"]
    # Veche's own next event builds on the remote one; it is served back as sent.
    mine = (await alice.put(f"rooms/{q(room.room_id)}/send/m.room.message/x",
                            {"msgtype": "m.text", "body": "hi bob"}))[1]["event_id"]
    status, got = await fed_event(http, veche, origin, mine)
    assert status == 200 and got["pdus"][0]["prev_events"] == [m3], got
    status, got = await fed_event(http, veche, origin, m1)
    assert status == 200 and got["pdus"] == [pdu_for_federation(p1, room.rv)]


async def test_transaction_limits(veche: ServerProcess, origin: FakeServer,
                                  http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    bob = origin.user("bob")
    joined = room.latest
    pdus = [room.build(origin, bob, "m.room.message", {"body": str(i)})[1] for i in range(51)]
    status, body = await origin.send(http, veche, pdus)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await origin.send(http, veche, [], [{"edu_type": "m.typing", "content": {}}] * 101)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    assert await texts(alice, room.room_id) == []
    # 50 PDUs of 40 KB each: over the client API's 1 MiB body limit, within /send's.
    room.latest = joined
    big = [room.build(origin, bob, "m.room.message", {"body": f"{i}" + "x" * 40_000})
           for i in range(50)]
    status, body = await origin.send(http, veche, [p for _, p in big])
    assert status == 200 and body == {"pdus": {e: {} for e, _ in big}}
    assert len(await texts(alice, room.room_id)) == 50


async def test_hostile_pdus(veche: ServerProcess, origin: FakeServer, test_ca: TestCA,
                            http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    bob = origin.user("bob")
    from signedjson.key import generate_signing_key

    # Forged: signed with another key under the same key ID. Dropped: not stored at all.
    forged_id, forged = room.build(origin, bob, "m.room.message", {"body": "forged"},
                                   key=generate_signing_key("k1"), advance=False)
    # Tampered content: the signature (over the redacted form) holds, the hash does not.
    tampered_id, tampered = room.build(origin, bob, "m.room.message", {"body": "original"})
    tampered = {**tampered, "content": {"body": "tampered"}}
    # Unauthorised: bob (power 0) makes himself admin. Stored rejected, never served.
    pl_id = room.state[("m.room.power_levels", "")]
    status, pl = await alice.get(f"rooms/{q(room.room_id)}/state/m.room.power_levels/")
    coup_id, coup = room.build(origin, bob, "m.room.power_levels",
                               {**pl, "users": {**pl["users"], bob: 100}}, "", advance=False)
    # Sent by a user of another server: the origin's signature is not the sender's.
    spoof_id, spoof = room.build(origin, "@alice:elsewhere.test", "m.room.message",
                                 {"body": "spoof"}, advance=False)
    # Not a valid event at all.
    bad_id, bad = room.build(origin, bob, "m.room.message", {"body": 1.5}, advance=False)
    status, result = await origin.send(http, veche, [forged, tampered, coup, spoof, bad,
                                                     "not an object", {"room_id": 5}])
    assert status == 200
    assert set(result["pdus"]) == {forged_id, tampered_id, coup_id, spoof_id, bad_id}
    assert result["pdus"][tampered_id] == {}
    for refused in (forged_id, coup_id, spoof_id, bad_id):
        assert "error" in result["pdus"][refused], (refused, result)
    # The tampered event is kept redacted; the others are not served.
    status, event = await alice.get(f"rooms/{q(room.room_id)}/event/{q(tampered_id)}")
    assert status == 200 and event["content"] == {}, event
    for refused in (forged_id, coup_id, spoof_id, bad_id):
        assert (await fed_event(http, veche, origin, refused))[0] == 404
    # The room's state is untouched by the coup.
    status, state = await alice.get(f"rooms/{q(room.room_id)}/state/m.room.power_levels/")
    assert state == pl and room.state[("m.room.power_levels", "")] == pl_id
    assert await texts(alice, room.room_id) == [None]  # the redacted one only


async def test_soft_failed_event_is_kept_out_of_the_room(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    bob, carol = origin.user("bob"), origin.user("carol")
    carol_join, pdu = room.build(origin, carol, "m.room.member", {"membership": "join"}, carol)
    assert (await origin.send(http, veche, [pdu]))[1] == {"pdus": {carol_join: {}}}
    before_ban = room.latest
    state_before_ban = dict(room.state)
    status, _ = await alice.post(f"rooms/{q(room.room_id)}/ban", {"user_id": bob})
    assert status == 200
    # Bob's server pretends not to have seen the ban: his message cites the event before it,
    # and is allowed there; current state (bob banned) does not allow it.
    evading_id, evading = room.build(origin, bob, "m.room.message", {"body": "evading"},
                                     prev=before_ban, state=state_before_ban, advance=False)
    status, result = await origin.send(http, veche, [evading])
    assert (status, result) == (200, {"pdus": {evading_id: {}}})
    # Stored (and served to servers, as the spec says) but not built upon.
    assert (await fed_event(http, veche, origin, evading_id))[0] == 200
    mine = (await alice.put(f"rooms/{q(room.room_id)}/send/m.room.message/after",
                            {"msgtype": "m.text", "body": "after"}))[1]["event_id"]
    status, got = await fed_event(http, veche, origin, mine)
    assert status == 200 and evading_id not in got["pdus"][0]["prev_events"], got
    status, member = await alice.get(f"rooms/{q(room.room_id)}/state/m.room.member/{q(bob)}")
    assert member["membership"] == "ban"


async def test_rooms_and_origins_refused(veche: ServerProcess, origin: FakeServer,
                                         test_ca: TestCA, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    status, body = await alice.post("createRoom", {"preset": "public_chat"})
    room = await SharedRoom.of(alice, body["room_id"])
    bob = origin.user("bob")
    # Not in the room yet: a message is refused (a join of its own user would not be).
    msg_id, msg = room.build(origin, bob, "m.room.message", {"body": "early"}, advance=False)
    # A room Veche does not hold: no event ID can be computed without its version: left out.
    other = SharedRoom("!" + "C" * 43, room.rv, dict(room.state), room.latest[0], 3)
    _, unknown = other.build(origin, bob, "m.room.message", {"body": "where?"})
    status, result = await origin.send(http, veche, [msg, unknown])
    assert status == 200 and set(result["pdus"]) == {msg_id}
    assert "not in the room" in result["pdus"][msg_id]["error"]
    # In the room, then denied by a server ACL (every server here is "localhost").
    join_id, join = room.build(origin, bob, "m.room.member", {"membership": "join"}, bob)
    assert (await origin.send(http, veche, [join]))[1] == {"pdus": {join_id: {}}}
    status, _ = await alice.put(f"rooms/{q(room.room_id)}/state/m.room.server_acl/",
                                {"allow": ["*"], "deny": ["localhost"]})
    assert status == 200
    await room.refresh(alice)
    acl_msg_id, acl_msg = room.build(origin, bob, "m.room.message", {"body": "denied"})
    status, result = await origin.send(http, veche, [acl_msg])
    assert "server ACL" in result["pdus"][acl_msg_id]["error"]
    assert (await fed_event(http, veche, origin, join_id))[0] == 403
    assert await texts(alice, room.room_id) == []


async def test_gaps_are_filled_from_the_origin(veche: ServerProcess, origin: FakeServer,
                                               http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    bob = origin.user("bob")
    # Three messages; only the last is sent: the first two come from get_missing_events.
    built = [room.build(origin, bob, "m.room.message", {"body": f"gap {i}"}) for i in range(3)]
    origin.answer(f"{F1}/get_missing_events/{room.room_id}",
                  {"events": [pdu_for_federation(p, room.rv) for _, p in built[:2]]})
    status, result = await origin.send(http, veche, [built[2][1]])
    assert (status, result) == (200, {"pdus": {built[2][0]: {}}})
    assert await texts(alice, room.room_id) == ["gap 0", "gap 1", "gap 2"]
    assert len(origin.asked(f"{F1}/get_missing_events/")) == 1
    # A bigger gap: the missing events do not come, so the state at the unknown parent is
    # asked for (/state_ids) and the parent itself fetched (/event), kept as an outlier; a
    # display name set in the gap counts.
    topic_id, topic = room.build(origin, bob, "m.room.member",
                                 {"membership": "join", "displayname": "Bob in the gap"}, bob)
    hole_id, hole = room.build(origin, bob, "m.room.message", {"body": "unseen"})
    last_id, last = room.build(origin, bob, "m.room.message", {"body": "after the gap"})
    origin.answer(f"{F1}/get_missing_events/{room.room_id}", {"events": []})
    before_hole = {k: v for k, v in room.state.items()}
    origin.answer(f"{F1}/state_ids/{room.room_id}",
                  {"pdu_ids": sorted(before_hole.values()), "auth_chain_ids": []})
    origin.answer(f"{F1}/event/{topic_id}", {"origin": origin.name, "origin_server_ts": 0,
                                             "pdus": [pdu_for_federation(topic, room.rv)]})
    origin.answer(f"{F1}/event/{hole_id}", {"origin": origin.name, "origin_server_ts": 0,
                                            "pdus": [pdu_for_federation(hole, room.rv)]})
    status, result = await origin.send(http, veche, [last])
    assert (status, result) == (200, {"pdus": {last_id: {}}}), veche.log()[-3000:]
    assert (await texts(alice, room.room_id))[-1] == "after the gap"
    status, got = await alice.get(f"rooms/{q(room.room_id)}/state/m.room.member/{q(bob)}")
    assert (status, got) == (200, {"membership": "join", "displayname": "Bob in the gap"})
    assert origin.asked(f"{F1}/state_ids/") and origin.asked(f"{F1}/event/{q(hole_id)}")


async def test_typing_and_receipts(veche: ServerProcess, origin: FakeServer,
                                   http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    bob = origin.user("bob")
    mine = (await alice.put(f"rooms/{q(room.room_id)}/send/m.room.message/r",
                            {"msgtype": "m.text", "body": "read me"}))[1]["event_id"]
    edus = [
        {"edu_type": "m.typing", "content": {"room_id": room.room_id, "user_id": bob, "typing": True}},
        # Someone else's user, and a user not in the room: ignored.
        {"edu_type": "m.typing", "content": {"room_id": room.room_id,
                                             "user_id": "@mallory:elsewhere.test", "typing": True}},
        {"edu_type": "m.typing", "content": {"room_id": room.room_id,
                                             "user_id": origin.user("dave"), "typing": True}},
        {"edu_type": "m.receipt", "content": {room.room_id: {"m.read": {bob: {
            "event_ids": [mine], "data": {"ts": 1}}}}}},
        {"edu_type": "m.presence", "content": {"push": []}},
        {"edu_type": "m.nonsense", "content": None},
    ]
    assert await origin.send(http, veche, [], edus) == (200, {"pdus": {}})
    status, sync = await alice.get("sync", params={"timeout": "0"})
    joined = section(sync, "rooms", "join")[room.room_id]
    ephemeral = {e["type"]: e["content"] for e in events_of(joined, "ephemeral")}
    assert ephemeral["m.typing"] == {"user_ids": [bob]}
    assert bob in ephemeral["m.receipt"][mine]["m.read"]


async def test_remote_redactions(veche: ServerProcess, origin: FakeServer,
                                 http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    bob = origin.user("bob")
    said, said_pdu = room.build(origin, bob, "m.room.message", {"msgtype": "m.text", "body": "oops"})
    assert (await origin.send(http, veche, [said_pdu]))[0] == 200
    mine = (await alice.put(f"rooms/{q(room.room_id)}/send/m.room.message/r1",
                            {"msgtype": "m.text", "body": "alice's"}))[1]["event_id"]
    await room.refresh(alice)
    # bob takes back his own message: applied. bob (power 0, another server) redacting
    # alice's: accepted into the room (the auth rules allow any redaction event) but no effect.
    own, own_pdu = room.build(origin, bob, "m.room.redaction", {"redacts": said})
    other, other_pdu = room.build(origin, bob, "m.room.redaction", {"redacts": mine})
    status, result = await origin.send(http, veche, [own_pdu, other_pdu])
    assert (status, result) == (200, {"pdus": {own: {}, other: {}}}), result
    status, event = await alice.get(f"rooms/{q(room.room_id)}/event/{q(said)}")
    assert status == 200 and event["content"] == {}, event
    assert event["unsigned"]["redacted_because"]["event_id"] == own
    status, event = await alice.get(f"rooms/{q(room.room_id)}/event/{q(mine)}")
    assert status == 200 and event["content"]["body"] == "alice's", event


async def test_a_gap_the_origin_cannot_explain_is_not_held_against_the_event(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    """When neither the missing events nor the state at them come (Synapse answers 404 to
    /state_ids at an event it holds only as an outlier), the event is not stored: once the
    origin can tell, the same event is taken (it used to be rejected for good, checked
    against an empty state with no create event)."""
    alice, room = await shared_room(http, veche, origin)
    bob = origin.user("bob")
    hole_id, hole = room.build(origin, bob, "m.room.message", {"body": "unseen"})
    last_id, last = room.build(origin, bob, "m.room.message", {"body": "after the gap"})
    origin.answer(f"{F1}/get_missing_events/{room.room_id}", {"events": []})
    origin.answer(f"{F1}/state_ids/{room.room_id}", {"errcode": "M_NOT_FOUND"}, 404)
    status, result = await origin.send(http, veche, [last])
    assert status == 200 and result["pdus"][last_id].get("error"), result
    assert "after the gap" not in await texts(alice, room.room_id)
    state_before = sorted(v for k, v in room.state.items())
    origin.answer(f"{F1}/state_ids/{room.room_id}", {"pdu_ids": state_before, "auth_chain_ids": []})
    origin.answer(f"{F1}/event/{hole_id}", {"origin": origin.name, "origin_server_ts": 0,
                                            "pdus": [pdu_for_federation(hole, room.rv)]})
    status, result = await origin.send(http, veche, [last])
    assert (status, result) == (200, {"pdus": {last_id: {}}}), result
    assert (await texts(alice, room.room_id))[-1:] == ["after the gap"]

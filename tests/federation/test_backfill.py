"""Backfill on pagination against a remote server the test plays (fake_origin.py): a gap in
Veche's history of a room is filled from the remote's /backfill when a client pages back to
it; junk and forged events are dropped, a remote that is down leaves the page as it was,
history visibility still applies, backfilled events are no news to /sync, and a redaction
that arrived before its target takes effect when the target comes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from signedjson.key import generate_signing_key

from tests.conftest import Client, ServerProcess
from tests.federation.fake_origin import F1, FakeServer, SharedRoom, q
from tests.federation.https_servers import RecordingServer
from tests.federation.pki import TestCA
from tests.sync_helpers import events_of, section
from veche.core.federation_pdus import pdu_for_federation


@pytest.fixture
async def second(test_ca: TestCA) -> AsyncIterator[FakeServer]:
    server = await RecordingServer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    yield FakeServer(server)
    await server.close()


async def page(client: Client, room_id: str, **params: str) -> dict[str, Any]:
    status, body = await client.get(f"rooms/{q(room_id)}/messages",
                                    params={"dir": "b", "limit": "100", **params})
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def bodies(chunk: list[dict[str, Any]]) -> list[str | None]:
    """Message bodies oldest first (None: a redacted message)."""
    return [e["content"].get("body") for e in reversed(chunk) if e["type"] == "m.room.message"]


async def test_backfill_fills_a_gap_when_paging_back(
        veche: ServerProcess, origin: FakeServer, second: FakeServer,
        http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    status, body = await alice.post("createRoom", {
        "preset": "public_chat", "room_version": "12",
        "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                           "content": {"history_visibility": "joined"}}]})
    assert status == 200, body
    room_id = body["room_id"]
    room = await SharedRoom.of(alice, room_id)
    bob = origin.user("bob")
    join_id, join = room.build(origin, bob, "m.room.member", {"membership": "join"}, bob)
    assert (await origin.send(http, veche, [join]))[0] == 200
    # A second server in the room: Veche asks one after the other, in name order.
    dave = second.user("dave")
    _, dave_join = room.build(second, dave, "m.room.member", {"membership": "join"}, dave)
    assert (await second.send(http, veche, [dave_join]))[0] == 200
    down, up = sorted([origin, second], key=lambda s: s.name)
    status, sync = await alice.get("sync", params={"timeout": "0"})
    since = sync["next_batch"]

    # Five messages Veche never gets, then bob takes back the second one and says more:
    # the redaction and the last message arrive, the five stay a gap (the remote gives
    # nothing to /get_missing_events), the newest of them fetched as an outlier with the
    # state at it.
    hidden = [room.build(origin, bob, "m.room.message", {"msgtype": "m.text", "body": f"h{i}"})
              for i in range(1, 6)]
    state_at_gap = dict(room.state)
    redaction_id, redaction = room.build(origin, bob, "m.room.redaction", {"redacts": hidden[1][0]})
    last_id, last = room.build(origin, bob, "m.room.message", {"msgtype": "m.text", "body": "after"})
    origin.answer(f"{F1}/get_missing_events/{room_id}", {"events": []})
    origin.answer(f"{F1}/state_ids/{room_id}",
                  {"pdu_ids": sorted(state_at_gap.values()), "auth_chain_ids": []})
    h5_id, h5 = hidden[-1]
    origin.answer(f"{F1}/event/{h5_id}", {"origin": origin.name, "origin_server_ts": 0,
                                         "pdus": [pdu_for_federation(h5, room.rv)]})
    status, result = await origin.send(http, veche, [redaction, last])
    assert (status, result) == (200, {"pdus": {redaction_id: {}, last_id: {}}}), veche.log()[-3000:]
    carol = await Client(http, veche.base_url).register("carol")
    assert (await carol.post(f"join/{q(room_id)}", {}))[0] == 200

    # The remotes are down: the page answers at once with what is here.
    for server in (down, up):
        server.answer(f"{F1}/backfill/{room_id}", {"errcode": "M_UNKNOWN"}, status=503)
    started = time.monotonic()
    assert bodies((await page(alice, room_id))["chunk"]) == ["after"]
    assert time.monotonic() - started < 10
    asked = up.asked(f"{F1}/backfill/")
    assert len(down.asked(f"{F1}/backfill/")) == len(asked) == 1, asked
    assert f"v={q(h5_id)}" in asked[0], asked

    # One comes back, with the five and junk: a forged copy (another key), an event of
    # another room, something that is no event. (The edge waits a little before it is
    # asked for again.)
    forged_id, forged = room.build(origin, bob, "m.room.message", {"body": "forged"},
                                   prev=[join_id], advance=False, key=generate_signing_key("k1"))
    other_room = {**pdu_for_federation(hidden[0][1], room.rv), "room_id": "!elsewhere:x.test"}
    up.answer(f"{F1}/backfill/{room_id}", {
        "origin": up.name, "origin_server_ts": 0,
        "pdus": [pdu_for_federation(p, room.rv) for _, p in reversed(hidden)]
        + [pdu_for_federation(forged, room.rv), other_room, "junk", 7]})
    await asyncio.sleep(2.5)
    # Carol joined after them and the room shows history to members from their join: the
    # backfill her page makes gives her nothing of them.
    assert bodies((await page(carol, room_id))["chunk"]) == []
    chunk = (await page(alice, room_id))["chunk"]
    assert bodies(chunk) == ["h1", None, "h3", "h4", "h5", "after"], bodies(chunk)
    redacted = next(e for e in chunk if e["event_id"] == hidden[1][0])
    assert redacted["unsigned"]["redacted_because"]["event_id"] == redaction_id
    assert forged_id not in {e["event_id"] for e in chunk}
    assert len(down.asked(f"{F1}/backfill/")) == 2 and len(up.asked(f"{F1}/backfill/")) == 2
    # Backfilled events place before the history Veche had; the page tokens go on past them.
    small = await page(alice, room_id, limit="4")
    assert bodies(small["chunk"]) == ["h5", "after"]
    rest = await page(alice, room_id, limit="100", **{"from": small["end"]})
    assert bodies(rest["chunk"]) == ["h1", None, "h3", "h4"]
    # They were never news: an incremental /sync from before shows the new messages only.
    status, sync = await alice.get("sync", params={"since": since, "timeout": "0"})
    timeline = events_of(section(sync, "rooms", "join")[room_id], "timeline")
    assert [e["content"].get("body") for e in timeline if e["type"] == "m.room.message"] == ["after"]
    # What is stored is not asked for again.
    await page(alice, room_id)
    assert len(down.asked(f"{F1}/backfill/")) == len(up.asked(f"{F1}/backfill/")) == 2


async def test_a_redaction_before_its_target_takes_effect_when_the_target_comes(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    status, body = await alice.post("createRoom", {"preset": "public_chat", "room_version": "10"})
    assert status == 200, body
    room = await SharedRoom.of(alice, body["room_id"])
    bob = origin.user("bob")
    _, join = room.build(origin, bob, "m.room.member", {"membership": "join"}, bob)
    assert (await origin.send(http, veche, [join]))[0] == 200
    # Two branches on bob's join: his message, and his redaction of it, which comes first.
    said_id, said = room.build(origin, bob, "m.room.message", {"msgtype": "m.text", "body": "oops"},
                               advance=False)
    redaction_id, redaction = room.build(origin, bob, "m.room.redaction", {"redacts": said_id})
    assert (await origin.send(http, veche, [redaction]))[0] == 200
    assert (await alice.get(f"rooms/{q(room.room_id)}/event/{q(said_id)}"))[0] == 404
    assert await origin.send(http, veche, [said]) == (200, {"pdus": {said_id: {}}})
    status, event = await alice.get(f"rooms/{q(room.room_id)}/event/{q(said_id)}")
    assert status == 200 and event["content"] == {}, event
    assert event["unsigned"]["redacted_because"]["event_id"] == redaction_id
    # Other servers are served it redacted too.
    status, got = await origin.request(http, veche, "GET", f"{F1}/event/{q(said_id)}")
    assert status == 200 and got["pdus"][0]["content"] == {}, got


async def test_an_accepted_outlier_stays_accepted_when_the_state_before_it_cannot_be_had(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    """Backfill brings again an event held as an outlier (here bob's new display name, which
    authorises his later messages), and the remote cannot give the state before it: the
    event stays as it was, accepted, and bob's next message still reaches alice."""
    alice = await Client(http, veche.base_url).register("alice")
    status, body = await alice.post("createRoom", {"preset": "public_chat", "room_version": "11"})
    assert status == 200, body
    room_id = body["room_id"]
    room = await SharedRoom.of(alice, room_id)
    bob = origin.user("bob")
    _, join = room.build(origin, bob, "m.room.member", {"membership": "join"}, bob)
    assert (await origin.send(http, veche, [join]))[0] == 200
    said_id, said = room.build(origin, bob, "m.room.message", {"msgtype": "m.text", "body": "gap"})
    state_before_rename = dict(room.state)
    rename_id, rename = room.build(origin, bob, "m.room.member",
                                   {"membership": "join", "displayname": "Bob"}, bob)
    after_id, after = room.build(origin, bob, "m.room.message", {"msgtype": "m.text", "body": "after"})
    # "after" comes with a gap of two: the rename is fetched as an outlier, with the state
    # before it.
    origin.answer(f"{F1}/get_missing_events/{room_id}", {"events": []})
    origin.answer(f"{F1}/state_ids/{room_id}",
                  {"pdu_ids": sorted(state_before_rename.values()), "auth_chain_ids": []})
    origin.answer(f"{F1}/event/{rename_id}", {"origin": origin.name, "origin_server_ts": 0,
                                             "pdus": [pdu_for_federation(rename, room.rv)]})
    assert await origin.send(http, veche, [after]) == (200, {"pdus": {after_id: {}}})

    # Paging back: the remote gives the rename again, but no longer the state before it.
    origin.answer(f"{F1}/backfill/{room_id}", {"origin": origin.name, "origin_server_ts": 0,
                                               "pdus": [pdu_for_federation(rename, room.rv)]})
    origin.answer(f"{F1}/state_ids/{room_id}", {"errcode": "M_NOT_FOUND"}, status=404)
    assert bodies((await page(alice, room_id))["chunk"]) == ["after"]
    assert origin.asked(f"{F1}/backfill/")
    assert said_id not in {e["event_id"] for e in (await page(alice, room_id))["chunk"]}

    later_id, later = room.build(origin, bob, "m.room.message", {"msgtype": "m.text", "body": "later"})
    assert await origin.send(http, veche, [later]) == (200, {"pdus": {later_id: {}}})
    assert bodies((await page(alice, room_id))["chunk"])[-2:] == ["after", "later"]

"""History in topological order, and history visibility by the state at each event, with
events stored by hand as federation will store them: late (a higher stream position) yet
early in the graph (a lower depth), and on the branches of a fork.

The server runs in this process so the tests can persist events with their context (the
state group after their prev event); its client API is served over HTTP to real clients, on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.conftest import BACKENDS, Client
from tests.inprocess import inprocess_server
from tests.test_rooms import assert_error, create_room, q, send_text
from veche.core import auth as auth_rules
from veche.server import HomeServer
from veche.storage import event_graph as graph
from veche.storage import events as ev_store
from veche.storage.database import Txn

T = TypeVar("T")
V1 = "/_matrix/client/v1"


class Server:
    def __init__(self, hs: HomeServer, base_url: str, http: aiohttp.ClientSession) -> None:
        self.hs, self.base_url, self.http = hs, base_url, http

    async def user(self) -> Client:
        return await Client(self.http, self.base_url).register()

    async def run(self, fn: Callable[[Txn], T]) -> T:
        return await self.hs.db.run(fn)

    async def store(
        self, room_id: str, sender: str, prev: str, etype: str, content: dict[str, Any],
        state_key: str | None = None, *, authorised: bool = True,
    ) -> str:
        """Persist, at the next stream position, an event built on `prev` alone (one deeper,
        authorised by the state after `prev`, which is its state before); returns its ID.
        With `authorised=False` the event is not checked first, and the persist step is left
        to reject it; `last` holds what it did."""
        rv = await self.hs.events.room_version(room_id)
        event: dict[str, Any] = {
            "type": etype, "room_id": room_id, "sender": sender, "content": content,
            # Now: state resolution breaks ties by timestamp, and these events are the newest.
            "origin_server_ts": int(time.time() * 1000), "prev_events": [prev],
        }
        if state_key is not None:
            event["state_key"] = state_key

        def place(txn: Txn) -> tuple[int, int, dict[tuple[str, str], str]]:
            groups = graph.get_state_groups(txn, prev)
            assert groups is not None and groups[1] is not None
            depth = ev_store.get_events(txn, [prev])[prev]["depth"]
            return depth, groups[1], graph.get_state_group_ids(txn, groups[1])

        depth, group, state = await self.run(place)
        event["depth"] = depth + 1
        event["auth_events"] = sorted(
            state[k] for k in auth_rules.auth_types_for_event(rv, event) if k in state)
        auth_state = {k: v for k, v in (await self.run(
            lambda txn: {k: ev_store.get_event(txn, state[k]) for k in state})).items()}
        if authorised:
            auth_rules.check_auth_rules(rv, event, auth_state)  # type: ignore[arg-type]
        event = self.hs.events._sign(event, rv)
        self.last = await self.hs.events.persist_received(event)
        if authorised:
            assert self.last.rejected is None and not self.last.soft_failed, self.last
        return str(event["event_id"])

    async def positions(self, room_id: str) -> dict[str, tuple[int, int]]:
        """(depth, stream_ordering) of the room's events, by ID."""
        rows = await self.run(lambda txn: txn.fetchall(
            "SELECT event_id, depth, stream_ordering FROM events WHERE room_id = ?", (room_id,)))
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}


@pytest.fixture(params=BACKENDS)
async def server(request: pytest.FixtureRequest, http: aiohttp.ClientSession) -> AsyncIterator[Server]:
    async with inprocess_server(request.param, "history.test") as (hs, base_url):
        yield Server(hs, base_url, http)


async def pages(client: Client, room_id: str, direction: str, limit: int,
                start: str | None = None) -> list[str]:
    """Event IDs of the whole /messages walk in `direction`, `limit` at a time, until no `end`."""
    ids: list[str] = []
    token = start
    for _ in range(200):
        params = {"dir": direction, "limit": str(limit)}
        if token is not None:
            params["from"] = token
        status, body = await client.get(f"rooms/{q(room_id)}/messages", params=params)
        assert status == 200, body
        assert body["start"] == token if token is not None else body["start"]
        ids += [e["event_id"] for e in body["chunk"]]
        if "end" not in body:
            return ids
        assert body["end"].startswith("t")  # a topological token
        token = body["end"]
    raise AssertionError("pagination did not end")


def topological(positions: dict[str, tuple[int, int]], ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda e: positions[e])


async def test_events_stored_late_page_where_the_graph_places_them(server: Server) -> None:
    alice = await server.user()
    room_id = await create_room(alice, preset="private_chat")
    m = [await send_text(alice, room_id, f"m{i}") for i in range(6)]
    # A branch off m0, stored after m5: as deep as m1..m3, later in the stream than all.
    o1 = await server.store(room_id, alice.user_id, m[0], "m.room.message", {"msgtype": "m.text", "body": "o1"})
    o2 = await server.store(room_id, alice.user_id, o1, "m.room.message", {"msgtype": "m.text", "body": "o2"})
    o3 = await server.store(room_id, alice.user_id, o2, "m.room.message", {"msgtype": "m.text", "body": "o3"})
    pos = await server.positions(room_id)
    assert pos[o1][0] == pos[m[1]][0] and pos[o1][1] > pos[m[5]][1]

    everything = topological(pos, list(pos))
    tail = everything[everything.index(m[0]):]
    # Within a depth the stream breaks the tie: m1 then o1 (stored later), and so on.
    assert tail == [m[0], m[1], o1, m[2], o2, m[3], o3, m[4], m[5]]
    for limit in (1, 2, 3, 50):
        assert await pages(alice, room_id, "f", limit) == everything
        assert await pages(alice, room_id, "b", limit) == everything[::-1]

    # /context around an event stored late: its neighbours in the graph's order, and tokens
    # that go on from there.
    status, ctx = await alice.get(f"rooms/{q(room_id)}/context/{q(o2)}", params={"limit": "4"})
    assert status == 200, ctx
    assert [e["event_id"] for e in ctx["events_before"]] == [m[2], o1]
    assert [e["event_id"] for e in ctx["events_after"]] == [m[3], o3]
    status, before = await alice.get(f"rooms/{q(room_id)}/messages",
                                     params={"dir": "b", "from": ctx["start"], "limit": "2"})
    assert [e["event_id"] for e in before["chunk"]] == [m[1], m[0]]
    status, after = await alice.get(f"rooms/{q(room_id)}/messages",
                                    params={"dir": "f", "from": ctx["end"], "limit": "10"})
    assert [e["event_id"] for e in after["chunk"]] == [m[4], m[5]] and "end" not in after

    # `to` bounds a page in topological order too.
    status, first = await alice.get(f"rooms/{q(room_id)}/messages",
                                    params={"dir": "b", "limit": "4"})
    assert [e["event_id"] for e in first["chunk"]] == [m[5], m[4], o3, m[3]]
    status, body = await alice.get(f"rooms/{q(room_id)}/messages",
                                   params={"dir": "f", "from": ctx["start"], "to": first["end"]})
    assert [e["event_id"] for e in body["chunk"]] == [o1, m[2], o2]

    # The next local event merges the branch: it comes last, and the state there is whole.
    merge = await send_text(alice, room_id, "merge")
    assert (await pages(alice, room_id, "b", 3))[:1] == [merge]
    status, body = await alice.get(f"rooms/{q(room_id)}/members", params={"at": ctx["end"]})
    assert status == 200 and [e["state_key"] for e in body["chunk"]] == [alice.user_id]


async def test_a_sync_prev_batch_pages_back_and_reaches_what_was_stored_after_it(
    server: Server,
) -> None:
    alice = await server.user()
    room_id = await create_room(alice, preset="private_chat")
    m = [await send_text(alice, room_id, f"m{i}") for i in range(10)]
    flt = json.dumps({"room": {"timeline": {"limit": 3}}})
    status, synced = await alice.get("sync", params={"filter": flt})
    assert status == 200, synced
    timeline = synced["rooms"]["join"][room_id]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == m[7:]
    prev_batch = timeline["prev_batch"]
    assert prev_batch.startswith("s")

    status, page = await alice.get(f"rooms/{q(room_id)}/messages",
                                   params={"dir": "b", "from": prev_batch, "limit": "3"})
    assert status == 200, page
    assert page["start"] == prev_batch
    assert [e["event_id"] for e in page["chunk"]] == [m[6], m[5], m[4]]

    # Events placed early in the graph arrive after the sync (backfill): paging on from the
    # topological token finds them among the events before m4.
    b1 = await server.store(room_id, alice.user_id, m[0], "m.room.message", {"msgtype": "m.text", "body": "b1"})
    b2 = await server.store(room_id, alice.user_id, b1, "m.room.message", {"msgtype": "m.text", "body": "b2"})
    rest = await pages(alice, room_id, "b", 2, page["end"])
    pos = await server.positions(room_id)
    older = [e for e in pos if pos[e] < pos[m[4]]]
    assert rest == topological(pos, older)[::-1]
    assert rest[:6] == [m[3], b2, m[2], b1, m[1], m[0]]

    # Forwards from prev_batch: everything stored after it in the stream (what the sync's
    # timeline showed, and b1 and b2, which came later), in topological order.
    status, fwd = await alice.get(f"rooms/{q(room_id)}/messages",
                                  params={"dir": "f", "from": prev_batch, "limit": "10"})
    assert [e["event_id"] for e in fwd["chunk"]] == [b1, b2, *m[7:]]


async def test_visibility_follows_the_state_at_each_event_in_a_fork(server: Server) -> None:
    """Under "joined" history, the room forks after P: one branch makes history
    world-readable (W, then Ya), the other has bob leave (Lb, then Yb, an edit of P). Stored
    W, Lb, Ya, Yb in that stream order, so judging by stream position would show Yb to bob
    and the stranger, and Lb to the stranger."""
    alice, bob, eve, dave = [await server.user() for _ in range(4)]
    room_id = await create_room(alice, preset="public_chat", initial_state=[{
        "type": "m.room.history_visibility", "state_key": "",
        "content": {"history_visibility": "joined"}}])
    status, _ = await bob.post(f"join/{q(room_id)}", {})
    assert status == 200
    p = await send_text(alice, room_id, "P")
    text = {"msgtype": "m.text", "body": "branch"}
    w = await server.store(room_id, alice.user_id, p, "m.room.history_visibility",
                           {"history_visibility": "world_readable"}, "")
    lb = await server.store(room_id, bob.user_id, p, "m.room.member", {"membership": "leave"},
                            bob.user_id)
    ya = await server.store(room_id, alice.user_id, w, "m.room.message", text)
    yb = await server.store(room_id, alice.user_id, lb, "m.room.message", {
        "msgtype": "m.text", "body": "* secret", "m.new_content": {"msgtype": "m.text", "body": "secret"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": p}})
    merge = await send_text(alice, room_id, "merge")  # on both: world-readable, bob gone
    status, _ = await dave.post(f"join/{q(room_id)}", {})
    assert status == 200
    pos = await server.positions(room_id)
    everything = topological(pos, list(pos))
    assert everything[everything.index(p):] == [p, w, lb, ya, yb, merge, everything[-1]]

    # alice, joined throughout, sees every event, in topological order.
    assert await pages(alice, room_id, "f", 3) == everything
    # bob sees what he was joined for on either branch, his own leave, and what was
    # world-readable; not Yb, sent on his branch after he left.
    bob_sees = await pages(bob, room_id, "b", 2)
    assert bob_sees[:6] == [everything[-1], merge, ya, lb, w, p] and yb not in bob_sees
    # The stranger sees only the world-readable branch and what followed it.
    assert await pages(eve, room_id, "f", 2) == [w, ya, merge, everything[-1]]
    # dave joined at the end: his initial sync drops what was "joined"-only before him
    # (what came before the room's history_visibility event was "shared": he sees that).
    flt = json.dumps({"room": {"timeline": {"limit": 50}}})
    status, synced = await dave.get("sync", params={"filter": flt})
    assert status == 200, synced
    seen = {e["event_id"] for e in synced["rooms"]["join"][room_id]["timeline"]["events"]}
    assert {w, ya, merge, everything[-1], everything[0]} <= seen
    assert not {p, lb, yb} & seen

    for client, event_id, ok in ((eve, yb, False), (eve, lb, False), (eve, ya, True),
                                 (bob, yb, False), (bob, ya, True), (bob, lb, True)):
        status, body = await client.get(f"rooms/{q(room_id)}/event/{q(event_id)}")
        if ok:
            assert status == 200, body
        else:
            assert_error(status, body, 404, "M_NOT_FOUND")
    status, ctx = await eve.get(f"rooms/{q(room_id)}/context/{q(ya)}", params={"limit": "10"})
    assert status == 200, ctx
    assert [e["event_id"] for e in ctx["events_before"]] == [w]
    assert [e["event_id"] for e in ctx["events_after"]] == [merge, everything[-1]]
    status, ctx = await eve.get(f"rooms/{q(room_id)}/context/{q(yb)}")
    assert_error(status, ctx, 404, "M_NOT_FOUND")

    # Yb's edit of P is bundled and listed for alice only.
    for client, edits in ((alice, [yb]), (bob, [])):
        status, rels = await client.get(f"{V1}/rooms/{q(room_id)}/relations/{q(p)}")
        assert status == 200, rels
        assert [e["event_id"] for e in rels["chunk"]] == edits
        status, event = await client.get(f"rooms/{q(room_id)}/event/{q(p)}")
        assert status == 200, event
        bundled = event["unsigned"].get("m.relations", {}).get("m.replace", {}).get("event_id")
        assert bundled == (edits[0] if edits else None)
    for client, hits in ((alice, [yb]), (dave, [])):
        status, found = await client.post("search", {"search_categories": {"room_events": {
            "search_term": "secret"}}})
        assert status == 200, found
        assert [r["result"]["event_id"] for r in found["search_categories"]["room_events"]["results"]] == hits


async def test_bad_tokens_are_refused(server: Server) -> None:
    alice = await server.user()
    room_id = await create_room(alice, preset="private_chat")
    event_id = await send_text(alice, room_id, "hi")
    room = q(room_id)
    bad = ["", "t", "t1", "t1-", "t-1", "t-1-2", "tx-1", "t1-x", "t1-2-3", "t1---2", "t1--x",
           "t99999999999999999999-1", "s", "sx_1", "s1_2_3", "1", "x1-2", "t 1-2"]
    for token in bad:
        for path, params in (
            (f"rooms/{room}/messages", {"from": token}),
            (f"rooms/{room}/messages", {"to": token}),
            (f"{V1}/rooms/{room}/relations/{q(event_id)}", {"from": token}),
            (f"{V1}/rooms/{room}/relations/{q(event_id)}", {"to": token}),
            (f"rooms/{room}/members", {"at": token}),
        ):
            status, body = await alice.get(path, params=params)
            assert_error(status, body, 400, "M_INVALID_PARAM")
        if token != "t1":  # /threads' own tokens from before were t<stream>
            status, body = await alice.get(f"{V1}/rooms/{room}/threads", params={"from": token})
            assert_error(status, body, 400, "M_INVALID_PARAM")
    # What the server hands out, it takes back.
    status, body = await alice.get(f"rooms/{room}/messages", params={"dir": "b", "limit": "1"})
    # (A negative stream: where backfilled events sit, before anything /sync served.)
    for token in (body["start"], body["end"], "t0-0", "s0_0", "s5", "t1--2"):
        status, page = await alice.get(f"rooms/{room}/messages", params={"from": token})
        assert status == 200, (token, page)


async def test_shared_history_stays_readable_after_leaving(server: Server) -> None:
    """"shared": visible to a user who joined at any point after the event (the spec's rule
    3), so one who left still reads what was sent before they joined, as they could before
    leaving; but nothing sent after they left. One who only ever rejected an invite reads
    none of it."""
    alice, bob, carol = [await server.user() for _ in range(3)]
    room_id = await create_room(alice, preset="public_chat")
    early = await send_text(alice, room_id, "before bob")
    assert (await alice.post(f"rooms/{q(room_id)}/invite", {"user_id": carol.user_id}))[0] == 200
    assert (await carol.post(f"rooms/{q(room_id)}/leave", {}))[0] == 200
    assert (await bob.post(f"join/{q(room_id)}", {}))[0] == 200
    during = await send_text(alice, room_id, "with bob")
    assert (await bob.post(f"rooms/{q(room_id)}/leave", {}))[0] == 200
    late = await send_text(alice, room_id, "after bob")
    seen = await pages(bob, room_id, "b", 3)
    assert early in seen and during in seen and late not in seen
    status, body = await bob.get(f"rooms/{q(room_id)}/event/{q(early)}")
    assert status == 200, body
    status, body = await bob.get(f"rooms/{q(room_id)}/event/{q(late)}")
    assert_error(status, body, 404, "M_NOT_FOUND")
    assert not {early, during, late} & set(await pages(carol, room_id, "b", 3))


async def test_a_world_readable_room_is_readable_from_its_history_visibility_event(
    server: Server,
) -> None:
    """Before its first history_visibility event a room's history is "shared": a stranger
    reads from that event on, not the create event nor the creator's join."""
    alice, eve = await server.user(), await server.user()
    room_id = await create_room(alice, preset="public_chat", initial_state=[{
        "type": "m.room.history_visibility", "state_key": "",
        "content": {"history_visibility": "world_readable"}}])
    hello = await send_text(alice, room_id, "hello")
    everything = await pages(alice, room_id, "f", 50)
    seen = await pages(eve, room_id, "f", 50)
    status, first = await eve.get(f"rooms/{q(room_id)}/event/{q(seen[0])}")
    assert status == 200 and first["type"] == "m.room.history_visibility"
    assert seen == everything[everything.index(seen[0]):] and seen[-1] == hello
    status, create = await eve.get(f"rooms/{q(room_id)}/event/{q(everything[0])}")
    assert_error(status, create, 404, "M_NOT_FOUND")

"""Rooms as event graphs: edges, forward extremities and state groups written on every send,
read back from the database and compared with what the client API reports."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import aiohttp

from tests.conftest import Client, ServerProcess
from tests.test_rooms import create_room, q, send_text
from veche.storage import event_graph as graph
from veche.storage import events as ev_store
from veche.storage.database import MIGRATIONS_DIR, Database, Txn, _yoyo_url, open_database

T = TypeVar("T")


@contextlib.contextmanager
def database(server: ServerProcess) -> Iterator[Database]:
    db = open_database(server.db_url, pool_size=1)
    try:
        yield db
    finally:
        db.close()


def read(server: ServerProcess, fn: Callable[[Txn], T]) -> T:
    with database(server) as db:
        return db.run_sync(fn)  # type: ignore[attr-defined,no-any-return]


async def timeline(client: Client, room_id: str) -> list[dict[str, Any]]:
    """The room's events, oldest first, as /messages serves them."""
    status, body = await client.get(f"rooms/{q(room_id)}/messages",
                                    params={"dir": "f", "limit": "1000"})
    assert status == 200, body
    assert "end" not in body
    return list(body["chunk"])


async def set_state(client: Client, room_id: str, etype: str, content: dict[str, Any],
                    state_key: str = "") -> str:
    status, body = await client.put(f"rooms/{q(room_id)}/state/{etype}/{q(state_key)}", content)
    assert status == 200, body
    return str(body["event_id"])


async def join(client: Client, room_id: str) -> None:
    status, body = await client.post(f"rooms/{q(room_id)}/join", {})
    assert status == 200, body


def graph_rows(room_id: str) -> Callable[[Txn], dict[str, Any]]:
    """Everything the graph says about a room, state groups as the states they stand for."""

    def load(txn: Txn) -> dict[str, Any]:
        ids = [r[0] for r in txn.fetchall(
            "SELECT event_id FROM events WHERE room_id = ? ORDER BY stream_ordering", (room_id,))]
        return {
            "events": ev_store.get_events(txn, ids),
            "order": ids,
            "prev": {e: sorted(graph.get_prev_event_ids(txn, e)) for e in ids},
            "auth": {e: sorted(r[0] for r in txn.fetchall(
                "SELECT auth_id FROM event_auth WHERE event_id = ?", (e,))) for e in ids},
            "extremities": [e for e, _, _ in graph.get_forward_extremities(txn, room_id)],
            "before": {e: graph.get_state_ids_before(txn, e) for e in ids},
            "after": {e: graph.get_state_ids_after(txn, e) for e in ids},
        }

    return load


def count_groups(room_id: str) -> Callable[[Txn], tuple[int, int, int]]:
    """(state groups, rows of deltas, deepest delta chain) of a room."""

    def load(txn: Txn) -> tuple[int, int, int]:
        row = txn.fetchone(
            "SELECT COUNT(*), MAX(delta_hops) FROM state_groups WHERE room_id = ?", (room_id,))
        rows = txn.fetchval(
            "SELECT COUNT(*) FROM state_groups_state s JOIN state_groups g"
            " ON g.id = s.state_group WHERE g.room_id = ?", (room_id,))
        assert row is not None
        return int(row[0]), int(rows), int(row[1] or 0)

    return load


async def busy_room(alice: Client, bob: Client) -> str:
    """A room whose timeline mixes messages, joins and state changes."""
    room_id = await create_room(alice, preset="public_chat", name="graph")
    await send_text(alice, room_id, "hello")
    await join(bob, room_id)
    await set_state(alice, room_id, "m.room.topic", {"topic": "one"})
    await send_text(bob, room_id, "hi")
    await set_state(alice, room_id, "m.room.topic", {"topic": "two"})
    await set_state(alice, room_id, "m.room.name", {"name": "renamed"})
    status, _ = await bob.post(f"rooms/{q(room_id)}/leave", {})
    assert status == 200
    await send_text(alice, room_id, "bye")
    return room_id


async def test_linear_sends_form_a_chain_with_one_extremity(
    make_client: Any, homeserver: ServerProcess,
) -> None:
    alice, bob = await make_client().register(), await make_client().register()
    room_id = await busy_room(alice, bob)
    events = await timeline(alice, room_id)
    rows = read(homeserver, graph_rows(room_id))
    assert rows["order"] == [e["event_id"] for e in events]
    for i, event_id in enumerate(rows["order"]):
        pdu = rows["events"][event_id]
        assert rows["prev"][event_id] == sorted(pdu["prev_events"])
        assert rows["auth"][event_id] == sorted(pdu["auth_events"])
        # Each local event builds on the one before it, one deeper.
        assert pdu["prev_events"] == rows["order"][i - 1 : i]
        if i:
            assert pdu["depth"] == rows["events"][rows["order"][i - 1]]["depth"] + 1
    assert rows["extremities"] == [events[-1]["event_id"]]
    # The auth chain index answers what walking auth_events through the PDUs finds.
    walked: dict[str, set[str]] = {}
    for event_id in rows["order"]:
        chain = walked[event_id] = set()
        todo = list(rows["events"][event_id]["auth_events"])
        while todo:
            if (auth_id := todo.pop()) not in chain:
                chain.add(auth_id)
                todo += rows["events"][auth_id]["auth_events"]
    assert max(len(chain) for chain in walked.values()) > 3
    indexed = read(homeserver, lambda txn: {
        e: graph.get_auth_chain_ids(txn, [e]) for e in rows["order"]})
    assert indexed == walked


async def test_state_at_every_event_matches_the_rooms_api(
    make_client: Any, homeserver: ServerProcess,
) -> None:
    alice, bob = await make_client().register(), await make_client().register()
    room_id = await busy_room(alice, bob)
    events = await timeline(alice, room_id)
    rows = read(homeserver, graph_rows(room_id))
    previous: dict[tuple[str, str], str] = {}
    for event in events:
        event_id = event["event_id"]
        # /context with no surrounding events reports the state at (after) the event.
        status, body = await alice.get(f"rooms/{q(room_id)}/context/{q(event_id)}",
                                       params={"limit": "0"})
        assert status == 200, body
        reported = {(e["type"], e["state_key"]): e["event_id"] for e in body["state"]}
        assert rows["after"][event_id] == reported, event["type"]
        assert rows["before"][event_id] == previous
        previous = reported
    status, current = await alice.get(f"rooms/{q(room_id)}/state")
    assert {(e["type"], e["state_key"]): e["event_id"] for e in current} == previous


async def test_messages_reuse_the_state_group(make_client: Any, homeserver: ServerProcess) -> None:
    alice = await make_client().register()
    room_id = await create_room(alice, preset="private_chat")
    groups_before = read(homeserver, count_groups(room_id))
    for i in range(200):
        await send_text(alice, room_id, f"m{i}", txn=f"g{i}")
    assert read(homeserver, count_groups(room_id)) == groups_before


async def test_state_events_add_small_deltas(
    make_client: Any, homeserver: ServerProcess, http: aiohttp.ClientSession,
) -> None:
    alice = await make_client().register()
    room_id = await create_room(alice, preset="public_chat")
    for _ in range(20):
        await join(await make_client().register(), room_id)
    status, state = await alice.get(f"rooms/{q(room_id)}/state")
    assert status == 200
    groups, delta_rows, _ = read(homeserver, count_groups(room_id))
    topics = [await set_state(alice, room_id, "m.room.topic", {"topic": f"t{i}"})
              for i in range(100)]
    after_groups, after_rows, hops = read(homeserver, count_groups(room_id))
    assert after_groups == groups + 100
    # One row per change, plus at most one full snapshot to keep reads short: not 100 copies
    # of a state of len(state) entries.
    assert after_rows - delta_rows <= 100 + len(state)
    assert hops < graph.SNAPSHOT_EVERY
    after = read(homeserver, lambda txn: graph.get_state_ids_after(txn, topics[-1]))
    status, current = await alice.get(f"rooms/{q(room_id)}/state")
    assert after == {(e["type"], e["state_key"]): e["event_id"] for e in current}


def _rollback_graph_migration(url: str) -> None:
    """Undo migration 0020 with its own rollback, leaving the schema that came before it."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_url(url))
    with backend.lock():
        backend.rollback_migrations(
            read_migrations(str(MIGRATIONS_DIR)).filter(lambda m: m.id == "0020_event_graph"))
    backend.connection.close()


async def test_migration_backfills_existing_rooms(
    make_server: Callable[..., ServerProcess], http: aiohttp.ClientSession,
) -> None:
    srv = make_server({}, dev=True)
    alice = await Client(http, srv.base_url).register()
    bob = await Client(http, srv.base_url).register()
    rooms = [await busy_room(alice, bob), await create_room(alice, preset="private_chat")]
    for i in range(3):
        await set_state(alice, rooms[1], "m.room.topic", {"topic": f"t{i}"})
    live = [read(srv, graph_rows(r)) for r in rooms]
    srv.stop()
    _rollback_graph_migration(srv.db_url)
    srv.start()  # applies 0020 again: its tables are filled from the stored events
    assert [read(srv, graph_rows(r)) for r in rooms] == live
    for room_id in rooms:
        assert read(srv, count_groups(room_id))[0] == sum(
            1 for e in await timeline(alice, room_id) if "state_key" in e)
    # The server carries on from the rebuilt graph.
    event_id = await send_text(alice, rooms[0], "after the migration")
    rows = read(srv, graph_rows(rooms[0]))
    assert rows["extremities"] == [event_id]
    assert rows["before"][event_id] == live[0]["after"][live[0]["order"][-1]]


def _event(event_id: str, room_id: str, depth: int, prev: list[str], auth: list[str],
           state_key: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": event_id, "room_id": room_id, "type": "m.room.member", "depth": depth,
        "prev_events": prev, "auth_events": auth,
    }
    if state_key is not None:
        event["state_key"] = state_key
    return event


async def test_extremities_are_a_set_for_forks_late_arrivals_and_rejections(
    homeserver: ServerProcess,
) -> None:
    """What federation will need of the graph writes, which local sends alone never reach:
    forks, events arriving after their children, rejected events and outliers."""
    room_id = f"!{secrets.token_hex(8)}:graph.test"
    ids = {n: f"${secrets.token_hex(8)}_{n}" for n in "ABCDEFROX"}

    def extremities(txn: Txn) -> set[str]:
        return {r[0] for r in txn.fetchall(
            "SELECT event_id FROM event_forward_extremities WHERE room_id = ?", (room_id,))}

    def run(txn: Txn) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        a = graph.persist_event_graph(txn, _event(ids["A"], room_id, 1, [], [], ""),
                                      graph.EventContext())
        graph.persist_event_graph(txn, _event(ids["B"], room_id, 2, [ids["A"]], [ids["A"]]),
                                  graph.EventContext(a))
        c = graph.persist_event_graph(
            txn, _event(ids["C"], room_id, 2, [ids["A"]], [ids["A"]], "@c:x"), graph.EventContext(a))
        seen["fork"] = extremities(txn)
        graph.persist_event_graph(txn, _event(ids["D"], room_id, 3, [ids["B"], ids["C"]], [ids["A"]]),
                                  graph.EventContext(c))
        seen["merged"] = extremities(txn)
        # F arrives before its prev E: E, when it comes, is no extremity.
        graph.persist_event_graph(txn, _event(ids["F"], room_id, 5, [ids["E"]], [ids["A"]]),
                                  graph.EventContext(c))
        graph.persist_event_graph(txn, _event(ids["E"], room_id, 4, [ids["D"]], [ids["A"]]),
                                  graph.EventContext(c))
        seen["late"] = extremities(txn)
        # A rejected state event neither moves the extremities nor changes the state.
        graph.persist_event_graph(
            txn, _event(ids["R"], room_id, 6, [ids["F"]], [ids["A"]], "@r:x"),
            graph.EventContext(c, rejected="auth"))
        seen["rejected"] = extremities(txn)
        seen["rejected_state"] = graph.get_state_ids_after(txn, ids["R"])
        seen["is_rejected"] = graph.is_rejected(txn, ids["R"])
        # An outlier has auth edges but no place in the graph.
        graph.persist_event_graph(txn, _event(ids["O"], room_id, 9, [ids["X"]], [ids["C"]], "@o:x"),
                                  graph.EventContext(outlier=True))
        seen["outlier"] = extremities(txn)
        seen["outlier_state"] = graph.get_state_ids_before(txn, ids["O"])
        seen["outlier_prev"] = graph.get_prev_event_ids(txn, ids["O"])
        seen["chain"] = graph.get_auth_chain_ids(txn, [ids["O"]])
        seen["state_c"] = graph.get_state_ids_after(txn, ids["C"])
        return seen

    seen = read(homeserver, run)
    assert seen["fork"] == {ids["B"], ids["C"]}
    assert seen["merged"] == {ids["D"]}
    assert seen["late"] == {ids["F"]}
    assert seen["rejected"] == {ids["F"]}
    assert seen["is_rejected"]
    assert seen["rejected_state"] == seen["state_c"] == {
        ("m.room.member", ""): ids["A"], ("m.room.member", "@c:x"): ids["C"]}
    assert seen["outlier"] == {ids["F"]}
    assert seen["outlier_state"] is None and seen["outlier_prev"] == []
    assert seen["chain"] == {ids["C"], ids["A"]}


async def test_a_local_event_cites_every_forward_extremity(
    make_client: Any, homeserver: ServerProcess,
) -> None:
    """A room whose graph has forked (as federation will make it) is merged by the next
    local event: it cites both tips, is one deeper than the deeper, and sees current state."""
    alice = await make_client().register()
    room_id = await create_room(alice, preset="private_chat")
    old = await send_text(alice, room_id, "before the topic")
    await set_state(alice, room_id, "m.room.topic", {"topic": "forked"})
    tip = await send_text(alice, room_id, "after the topic")

    def fork(txn: Txn) -> None:
        txn.execute("INSERT INTO event_forward_extremities (room_id, event_id) VALUES (?, ?)",
                    (room_id, old))

    read(homeserver, fork)
    merged = await send_text(alice, room_id, "merge")
    rows = read(homeserver, graph_rows(room_id))
    pdu = rows["events"][merged]
    assert pdu["prev_events"] == [tip, old]
    assert pdu["depth"] == rows["events"][tip]["depth"] + 1
    assert rows["extremities"] == [merged]
    assert rows["before"][merged] == rows["after"][tip]
    status, current = await alice.get(f"rooms/{q(room_id)}/state")
    assert rows["after"][merged] == {(e["type"], e["state_key"]): e["event_id"] for e in current}

"""The one persist entry (services/persist.py) with events made by hand, as federation will
hand them over: a room forks into branches with conflicting state, a later event merges them,
and current state (what /state serves, room_memberships) is the state resolution of the
branches. Rejected events and outliers are stored and change nothing.

The server runs in this process (its HTTP API served to a real client) so the tests can
persist events through the entry itself, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.conftest import BACKENDS, Client
from tests.inprocess import inprocess_server
from tests.test_rooms import create_room, q, send_text
from veche.core import auth as auth_rules
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from veche.core.state_res import resolve_state
from veche.server import HomeServer
from veche.services.persist import MissingPrevEvents, Persisted
from veche.storage import database
from veche.storage import event_graph as graph
from veche.storage import events as ev_store
from veche.storage.database import Txn

T = TypeVar("T")
StateKey = tuple[str, str]
PL = ("m.room.power_levels", "")
TOPIC = ("m.room.topic", "")


class Server:
    def __init__(self, hs: HomeServer, base_url: str, http: aiohttp.ClientSession) -> None:
        self.hs, self.base_url, self.http = hs, base_url, http

    async def user(self) -> Client:
        return await Client(self.http, self.base_url).register()

    async def run(self, fn: Callable[[Txn], T]) -> T:
        return await self.hs.db.run(fn)

    async def rv(self, room_id: str) -> RoomVersion:
        return await self.hs.events.room_version(room_id)

    async def build(
        self, room_id: str, sender: str, prev: list[str], etype: str, content: dict[str, Any],
        state_key: str | None = None, ts: int = 1_700_000_000_000,
    ) -> dict[str, Any]:
        """A signed event on top of `prev`, its auth_events selected from the state there."""
        rv = await self.rv(room_id)
        event: dict[str, Any] = {
            "type": etype, "room_id": room_id, "sender": sender, "content": content,
            "origin_server_ts": ts, "prev_events": prev,
        }
        if state_key is not None:
            event["state_key"] = state_key

        def place(txn: Txn) -> tuple[int, dict[StateKey, str]]:
            depth = max(ev_store.get_events(txn, prev)[p]["depth"] for p in prev)
            states = [graph.get_state_ids_after(txn, p) or {} for p in prev]
            return depth, self.hs.events.persister.resolve(txn, rv, states)

        depth, state = await self.run(place)
        event["depth"] = depth + 1
        event["auth_events"] = sorted(
            state[k] for k in auth_rules.auth_types_for_event(rv, event) if k in state)
        return self.hs.events._sign(event, rv)

    async def receive(self, event: dict[str, Any], outlier: bool = False) -> Persisted:
        return await self.hs.events.persist_received(event, outlier=outlier)


@pytest.fixture(params=BACKENDS)
async def server(request: pytest.FixtureRequest, http: aiohttp.ClientSession) -> AsyncIterator[Server]:
    async with inprocess_server(request.param, "persist.test") as (hs, base_url):
        yield Server(hs, base_url, http)


class MemoryGraph:
    """The room's stored events as core/state_res.py's EventGraph, read once: the expected
    resolution is computed by the core walking auth_events itself, not by the storage index."""

    def __init__(self, events: dict[str, dict[str, Any]], rejected: set[str]) -> None:
        self.events, self.rejected = events, rejected

    def event(self, event_id: str) -> dict[str, Any] | None:
        return self.events.get(event_id)

    def is_rejected(self, event_id: str) -> bool:
        return event_id in self.rejected


def walk_auth_chain(events: dict[str, dict[str, Any]], event_ids: Iterable[str]) -> set[str]:
    """The events themselves and every event their auth_events reach."""
    seen: set[str] = set()
    todo = list(event_ids)
    while todo:
        if (event_id := todo.pop()) not in seen:
            seen.add(event_id)
            todo += events[event_id]["auth_events"] if event_id in events else []
    return seen


def snapshot(room_id: str) -> Callable[[Txn], dict[str, Any]]:
    def load(txn: Txn) -> dict[str, Any]:
        ids = [r[0] for r in txn.fetchall("SELECT event_id FROM events WHERE room_id = ?", (room_id,))]
        extremities = [e for e, _, _ in graph.get_forward_extremities(txn, room_id)]
        return {
            "events": ev_store.get_events(txn, ids),
            "rejected": {e for e in ids if graph.is_rejected(txn, e)},
            "extremities": extremities,
            "extremity_states": [graph.get_state_ids_after(txn, e) for e in extremities],
            "current": ev_store.get_current_state_ids(txn, room_id),
            "memberships": {r[0]: (r[1], r[2]) for r in txn.fetchall(
                "SELECT user_id, membership, event_id FROM room_memberships WHERE room_id = ?",
                (room_id,))},
        }

    return load


async def check_current_state(server: Server, room_id: str, reader: Client) -> dict[str, Any]:
    """Current state is the core's resolution of the extremities' states, /state serves it
    and room_memberships mirrors its member events."""
    snap = await server.run(snapshot(room_id))
    states = snap["extremity_states"]
    expected = resolve_state(await server.rv(room_id), states,
                             MemoryGraph(snap["events"], snap["rejected"]))
    assert snap["current"] == expected
    # The storage index's auth difference is the one found walking auth_events.
    chains = [walk_auth_chain(snap["events"], state.values()) for state in states]
    stored = await server.run(lambda txn: graph.get_auth_chain_difference(txn, states))
    assert stored == set.union(*chains) - set.intersection(*chains)
    status, body = await reader.get(f"rooms/{q(room_id)}/state")
    assert status == 200, body
    assert {(e["type"], e["state_key"]): e["event_id"] for e in body} == expected
    members = {sk: (snap["events"][eid]["content"]["membership"], eid)
               for (t, sk), eid in expected.items() if t == "m.room.member"}
    assert snap["memberships"] == members
    return snap


async def forkable_room(server: Server, room_version: str) -> tuple[str, Client, Client, str]:
    """Alice (100) and Bob (50, who may change power levels) in a room; its one extremity."""
    alice, bob = await server.user(), await server.user()
    users = {bob.user_id: 50}
    if not KNOWN_ROOM_VERSIONS[room_version].creators_have_infinite_power:
        users[alice.user_id] = 100  # else the creator's power is implicit and unlimited
    room_id = await create_room(alice, preset="public_chat", room_version=room_version,
                                power_level_content_override={
                                    "users": users, "events": {"m.room.power_levels": 50}})
    status, body = await bob.post(f"rooms/{q(room_id)}/join", {})
    assert status == 200, body
    tip = await send_text(alice, room_id, "the fork point")
    return room_id, alice, bob, tip


@pytest.mark.parametrize("room_version", ["10", "12"])
async def test_a_ban_racing_a_power_level_change_resolves_on_merge(
    server: Server, room_version: str,
) -> None:
    room_id, alice, bob, fork = await forkable_room(server, room_version)
    start = await server.run(snapshot(room_id))
    a, b = alice.user_id, bob.user_id
    assert a is not None and b is not None
    pl = start["events"][start["current"][PL]]["content"]
    # Bob's branch: he lowers the name level and sets a topic; it lands first.
    bob_pl = await server.build(room_id, b, [fork], *PL_of(pl, {"m.room.name": 40}), ts=2)
    assert (await server.receive(bob_pl)).rejected is None
    bob_topic = await server.build(room_id, b, [bob_pl["event_id"]], "m.room.topic",
                                   {"topic": "bob's"}, "", ts=3)
    assert (await server.receive(bob_topic)).rejected is None
    snap = await check_current_state(server, room_id, alice)
    assert snap["current"][PL] == bob_pl["event_id"] and snap["current"][TOPIC] == bob_topic["event_id"]
    # Alice's branch, from the same fork point: she bans Bob.
    ban = await server.build(room_id, a, [fork], "m.room.member", {"membership": "ban"}, b, ts=1)
    persisted = await server.receive(ban)
    assert persisted.rejected is None and persisted.members_changed == [b]
    snap = await check_current_state(server, room_id, alice)
    assert set(snap["extremities"]) == {bob_topic["event_id"], ban["event_id"]}
    # The ban wins: Bob's power level change is undone and his topic (set by a banned user,
    # in a room that had none) leaves current state.
    assert snap["current"][PL] == start["current"][PL]
    assert TOPIC not in snap["current"]
    assert snap["memberships"][b] == ("ban", ban["event_id"])
    # A merging event from Alice keeps that state.
    merge = await server.build(room_id, a, [bob_topic["event_id"], ban["event_id"]],
                               "m.room.message", {"msgtype": "m.text", "body": "merged"}, ts=4)
    assert (await server.receive(merge)).rejected is None
    after = await check_current_state(server, room_id, alice)
    assert after["extremities"] == [merge["event_id"]] and after["current"] == snap["current"]
    # Bob, banned at the merge, is rejected there: stored, no extremity, no state.
    late = await server.build(room_id, b, [merge["event_id"]], "m.room.topic", {"topic": "x"}, "", ts=5)
    assert (await server.receive(late)).rejected
    final = await check_current_state(server, room_id, alice)
    assert final["extremities"] == [merge["event_id"]] and final["current"] == after["current"]
    assert late["event_id"] in final["rejected"]
    # A local send builds on the merge.
    local = await send_text(alice, room_id, "after the merge")
    last = await check_current_state(server, room_id, alice)
    assert last["extremities"] == [local] and last["events"][local]["prev_events"] == [merge["event_id"]]


def PL_of(pl: dict[str, Any], events: dict[str, int]) -> tuple[str, dict[str, Any], str]:
    return "m.room.power_levels", {**pl, "events": {**pl.get("events", {}), **events}}, ""


async def test_conflicting_topics_resolve_and_a_merge_that_changes_nothing_writes_nothing(
    server: Server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    room_id, alice, bob, fork = await forkable_room(server, "12")
    a, b = alice.user_id, bob.user_id
    assert a is not None and b is not None
    # Two topics set concurrently: the later one (by origin_server_ts) wins, whichever
    # arrives first.
    later = await server.build(room_id, a, [fork], "m.room.topic", {"topic": "alice's"}, "", ts=20)
    earlier = await server.build(room_id, b, [fork], "m.room.topic", {"topic": "bob's"}, "", ts=10)
    await server.receive(later)
    await server.receive(earlier)
    snap = await check_current_state(server, room_id, bob)
    assert snap["current"][TOPIC] == later["event_id"]
    assert set(snap["extremities"]) == {later["event_id"], earlier["event_id"]}

    # A message on one branch keeps the fork's states: nothing to resolve, nothing written.
    with recording_writes(monkeypatch) as writes:
        aside = await server.build(room_id, a, [later["event_id"]], "m.room.message",
                                   {"msgtype": "m.text", "body": "aside"}, ts=25)
        await server.receive(aside)
    assert writes and not state_writes(writes)
    snap = await check_current_state(server, room_id, bob)
    assert set(snap["extremities"]) == {aside["event_id"], earlier["event_id"]}
    # So does the event merging the branches.
    with recording_writes(monkeypatch) as writes:
        merge = await server.build(room_id, b, [earlier["event_id"], aside["event_id"]],
                                   "m.room.message", {"msgtype": "m.text", "body": "merge"}, ts=30)
        await server.receive(merge)
    assert writes and not state_writes(writes)
    after = await check_current_state(server, room_id, bob)
    assert after["current"] == snap["current"] and after["extremities"] == [merge["event_id"]]


@contextlib.contextmanager
def recording_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The SQL of every write in the block (transactions run on other threads too)."""
    writes: list[str] = []
    originals = {name: getattr(database.Txn, name)
                 for name in ("execute", "executemany", "write", "write_many")}

    def recording(name: str) -> Any:
        def wrapper(self: Txn, sql: str, args: Any = ()) -> Any:
            if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                writes.append(sql)
            return originals[name](self, sql, args)
        return wrapper

    with monkeypatch.context() as patch:
        for name in originals:
            patch.setattr(database.Txn, name, recording(name))
        yield writes


def state_writes(writes: list[str]) -> list[str]:
    return [w for w in writes if "current_state" in w or "room_memberships" in w]


async def test_power_levels_from_two_branches_resolve_by_power(server: Server) -> None:
    """Alice lowers Bob to 0 on one branch while Bob, on another, sets a topic: Bob's topic
    no longer passes the resolved power levels and current state keeps the old topic."""
    room_id, alice, bob, fork = await forkable_room(server, "12")
    a, b = alice.user_id, bob.user_id
    assert a is not None and b is not None
    start = await server.run(snapshot(room_id))
    pl = start["events"][start["current"][PL]]["content"]
    demote = await server.build(room_id, a, [fork], "m.room.power_levels",
                                {**pl, "users": {**pl["users"], b: 0}}, "", ts=1)
    topic = await server.build(room_id, b, [fork], "m.room.topic", {"topic": "mine"}, "", ts=2)
    await server.receive(topic)
    await server.receive(demote)
    snap = await check_current_state(server, room_id, alice)
    assert snap["current"][PL] == demote["event_id"]
    assert TOPIC not in snap["current"]


async def test_a_rejected_event_changes_nothing_and_an_outlier_has_no_state(server: Server) -> None:
    room_id, alice, bob, fork = await forkable_room(server, "12")
    carol = await server.user()
    assert carol.user_id is not None and bob.user_id is not None
    before = await check_current_state(server, room_id, alice)
    # Carol is no member: her topic is rejected against the state before it.
    rejected = await server.build(room_id, carol.user_id, [fork], "m.room.topic",
                                  {"topic": "intruder"}, "", ts=1)
    persisted = await server.receive(rejected)
    assert persisted.rejected
    after = await check_current_state(server, room_id, alice)
    assert after["extremities"] == [fork] and after["current"] == before["current"]
    assert rejected["event_id"] in after["rejected"]
    # An event citing the rejected one still finds its state before in the graph, and the
    # rejected event never becomes an extremity.
    reply = await server.build(room_id, bob.user_id, [rejected["event_id"], fork], "m.room.message",
                               {"msgtype": "m.text", "body": "above an intruder"}, ts=2)
    assert (await server.receive(reply)).rejected is None
    after = await check_current_state(server, room_id, alice)
    assert after["extremities"] == [reply["event_id"]]
    # An outlier: stored with its auth edges, no state group, no place in the graph.
    outlier = await server.build(room_id, bob.user_id, [fork], "m.room.topic", {"topic": "o"}, "", ts=3)
    await server.receive(outlier, outlier=True)
    groups, prev = await server.run(lambda txn: (
        graph.get_state_groups(txn, outlier["event_id"]),
        graph.get_prev_event_ids(txn, outlier["event_id"])))
    assert groups is None and prev == []
    final = await check_current_state(server, room_id, alice)
    assert final["extremities"] == [reply["event_id"]] and final["current"] == after["current"]
    # An event whose prev events are unknown needs them first.
    orphan = await server.build(room_id, bob.user_id, [fork], "m.room.message", {"body": "?"}, ts=4)
    orphan["prev_events"] = ["$unknown"]
    with pytest.raises(MissingPrevEvents):
        await server.receive(orphan)


async def test_hooks_fire_for_received_events_and_not_for_rejected_ones(server: Server) -> None:
    room_id, alice, bob, fork = await forkable_room(server, "12")
    carol = await server.user()
    assert bob.user_id is not None and carol.user_id is not None
    status, body = await alice.get("sync")
    assert status == 200, body
    since = body["next_batch"]
    accepted = await server.build(room_id, bob.user_id, [fork], "m.room.message",
                                  {"msgtype": "m.text", "body": "pelican"}, ts=1)
    await server.receive(accepted)
    intruder = await server.build(room_id, carol.user_id, [accepted["event_id"]], "m.room.message",
                                  {"msgtype": "m.text", "body": "cormorant"}, ts=2)
    assert (await server.receive(intruder)).rejected
    # Push: the accepted message counts as unread for Alice.
    status, body = await alice.get("sync", params={"since": since, "timeout": "0"})
    assert status == 200, body
    assert body["rooms"]["join"][room_id]["unread_notifications"]["notification_count"] == 1
    # Search: only the accepted one is indexed.
    for term, hits in (("pelican", [accepted["event_id"]]), ("cormorant", [])):
        status, found = await alice.post(
            "search", {"search_categories": {"room_events": {"search_term": term}}})
        assert status == 200, found
        assert [r["result"]["event_id"] for r in found["search_categories"]["room_events"]["results"]] == hits


async def test_an_event_already_stored_is_returned_as_it_was(server: Server) -> None:
    room_id, alice, _, fork = await forkable_room(server, "12")
    assert alice.user_id is not None
    event = await server.build(room_id, alice.user_id, [fork], "m.room.message", {"body": "x"})
    first = await server.receive(event)
    again = await server.receive(event)
    assert again.stream_ordering == first.stream_ordering

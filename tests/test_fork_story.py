"""A room forks and merges, as federation will make it do, and every reader agrees.

Two branches grow from one message: on one, alice sets topic A and bans carol; on the
other, alice sets topic B (later), bob tries to make himself admin (rejected: he may not),
and carol, still a member on that branch, talks (soft-failed: the room's current state has
her banned). A local message merges the branches. Then current state is state resolution
v2's answer, /sync and /messages serve the merged history with every event after the events
it cites, never the rejected or soft-failed one, and each event is shown to carol by the state
at that event, not by where it sits in the stream.
"""

from __future__ import annotations

import json
from typing import Any

from tests.test_rooms import assert_error, create_room, q, send_text
from tests.test_topological_history import Server, pages, server  # noqa: F401 (fixture)
from veche.core.state_res import resolve_state
from veche.storage import event_graph as graph
from veche.storage.database import Txn


async def test_a_forked_room_merges_and_every_reader_agrees(server: Server) -> None:  # noqa: F811
    alice, bob, carol = [await server.user() for _ in range(3)]
    room_id = await create_room(alice, preset="public_chat")
    for member in (bob, carol):
        status, body = await member.post(f"join/{q(room_id)}", {})
        assert status == 200, body
    root = await send_text(alice, room_id, "before the fork")
    status, before = await alice.get("sync")
    assert status == 200, before

    # Branch A.
    topic_a = await server.store(room_id, alice.user_id, root, "m.room.topic", {"topic": "A"}, "")
    ban = await server.store(room_id, alice.user_id, topic_a, "m.room.member",
                             {"membership": "ban"}, carol.user_id)
    # Branch B, stored after A: the room now has two forward extremities.
    topic_b = await server.store(room_id, alice.user_id, root, "m.room.topic", {"topic": "B"}, "")
    power = await server.store(room_id, bob.user_id, topic_b, "m.room.power_levels", {
        "users": {bob.user_id: 100}}, "", authorised=False)
    assert server.last.rejected is not None
    evading = await server.store(room_id, carol.user_id, topic_b, "m.room.message",
                                 {"msgtype": "m.text", "body": "still here"}, authorised=False)
    assert server.last.rejected is None and server.last.soft_failed
    talk_b = await server.store(room_id, alice.user_id, topic_b, "m.room.message",
                                {"msgtype": "m.text", "body": "on branch B"})
    merge = await send_text(alice, room_id, "merged")

    # Current state is v2's resolution of the two branches' states: B's later topic, and
    # the ban (a power event, resolved first) against carol's join.
    def branch_states(txn: Txn) -> list[dict[tuple[str, str], str]]:
        return [graph.get_state_ids_after(txn, e) or {} for e in (ban, talk_b)]

    rv = await server.hs.events.room_version(room_id)
    resolved = await server.run(lambda txn: resolve_state(
        rv, branch_states(txn), graph.StoredEventGraph(txn)))
    assert resolved[("m.room.topic", "")] == topic_b
    assert resolved[("m.room.member", carol.user_id)] == ban
    status, state = await alice.get(f"rooms/{q(room_id)}/state")
    assert status == 200, state
    assert {(e["type"], e["state_key"]): e["event_id"] for e in state} == {
        **resolved, ("m.room.member", alice.user_id): resolved[("m.room.member", alice.user_id)]}
    status, topic = await alice.get(f"rooms/{q(room_id)}/state/m.room.topic")
    assert status == 200 and topic["topic"] == "B"
    extremities = await server.run(lambda txn: graph.get_forward_extremities(txn, room_id))
    assert [e for e, _, _ in extremities] == [merge]

    # /messages and /sync: the merged history, each event after what it cites; never the
    # rejected or the soft-failed event.
    served = {root, topic_a, ban, topic_b, talk_b, merge}
    hidden = {power, evading}
    history = list(reversed(await pages(alice, room_id, "b", 3)))
    flt = json.dumps({"room": {"timeline": {"limit": 100}}})
    status, synced = await alice.get("sync", params={"filter": flt})
    assert status == 200, synced
    timeline = [e["event_id"] for e in synced["rooms"]["join"][room_id]["timeline"]["events"]]
    status, since = await alice.get("sync", params={"filter": flt, "since": before["next_batch"]})
    assert status == 200, since
    recent = [e["event_id"] for e in since["rooms"]["join"][room_id]["timeline"]["events"]]
    assert set(recent) == served - {root}, recent
    events = await server.run(lambda txn: {e: graph.get_prev_event_ids(txn, e) for e in served})
    for order in (history, timeline):
        assert served <= set(order) and not hidden & set(order), order
        for event_id in served:
            assert all(order.index(p) < order.index(event_id)
                       for p in events[event_id] if p in order), (event_id, order)
    assert history[-1] == timeline[-1] == merge
    for event_id in hidden:
        for path in (f"rooms/{q(room_id)}/event/{q(event_id)}",
                     f"rooms/{q(room_id)}/context/{q(event_id)}"):
            status, body = await alice.get(path)
            assert_error(status, body, 404, "M_NOT_FOUND")

    # Carol, banned on branch A only: she reads branch B's message (she was a member in the
    # state at it), not the merge (banned in the state at it), though B's message was
    # stored after her ban.
    def can_carol_see(event_id: str) -> Any:
        return carol.get(f"rooms/{q(room_id)}/event/{q(event_id)}")

    assert (await can_carol_see(talk_b))[0] == 200
    assert (await can_carol_see(topic_a))[0] == 200
    status, body = await can_carol_see(merge)
    assert_error(status, body, 404, "M_NOT_FOUND")

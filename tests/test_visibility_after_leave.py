"""A user who left a room (kicked, banned, or by leaving) sees nothing sent after they left:
not in the timeline, and not through what the server bundles or summarises about the events
they may still read (edits, thread summaries, references, the thread list, search, push).
A member who stayed sees all of it. After a re-join under "joined" history visibility, what
was sent while away stays hidden in the same way."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import Client
from tests.sync_helpers import events_of, room_with, section, sync
from tests.test_pushers import Gateway, gateway, pusher  # noqa: F401 (gateway: the fixture)
from tests.test_rooms import create_room, q
from tests.test_rooms_relations import edit, send, thread_reply

V1 = "/_matrix/client/v1"


def text(body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body}


def reference(target: str, body: str) -> dict[str, Any]:
    return {**text(body), "m.relates_to": {"rel_type": "m.reference", "event_id": target}}


async def remove(how: str, alice: Client, bob: Client, room_id: str) -> None:
    if how == "leave":
        status, body = await bob.post(f"rooms/{q(room_id)}/leave", {})
    else:
        status, body = await alice.post(f"rooms/{q(room_id)}/{how}", {"user_id": bob.user_id})
    assert status == 200, body


@dataclass
class Scene:
    alice: Client
    bob: Client
    carol: Client
    room_id: str
    ids: dict[str, str] = field(default_factory=dict)
    later: set[str] = field(default_factory=set)  # everything sent after bob left


async def scene(make_client: Any, how: str, hv: str = "shared", before_leave: Any = None) -> Scene:
    """alice's message M is edited (E0), replied to in a thread (T1, by carol) and referenced
    (R0); M2 is a plain message. Then bob goes; then M is edited again (E1), T1 is edited
    (T1e), the thread gets T2, M gets reference R1, a new thread N starts (N1), and M2 becomes
    a thread root (M2r)."""
    alice, bob, carol = [await make_client().register() for _ in range(3)]
    room_id = await create_room(alice, preset="public_chat", initial_state=[{
        "type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": hv}}])
    for c in (bob, carol):
        assert (await c.post(f"join/{q(room_id)}", {}))[0] == 200
    s = Scene(alice, bob, carol, room_id)
    ids = s.ids
    ids["M"] = await send(alice, room_id, text("original"))
    ids["E0"] = await send(alice, room_id, edit(ids["M"], "v1"))
    ids["T1"] = await send(carol, room_id, thread_reply(ids["M"], "early reply"))
    ids["R0"] = await send(carol, room_id, reference(ids["M"], "early ref"))
    ids["M2"] = await send(alice, room_id, text("quiet until later"))
    if before_leave is not None:
        await before_leave(s)
    await remove(how, alice, bob, room_id)
    later = [
        ("E1", alice, edit(ids["M"], "secret v2")),
        ("T1e", carol, edit(ids["T1"], "secret early reply edit")),
        ("T2", carol, thread_reply(ids["M"], "secret reply")),
        ("R1", carol, reference(ids["M"], "secret ref")),
        ("N", alice, text("secret new root")),
    ]
    for name, client, content in later:
        ids[name] = await send(client, room_id, content)
    ids["N1"] = await send(carol, room_id, thread_reply(ids["N"], "secret thread"))
    ids["M2r"] = await send(carol, room_id, thread_reply(ids["M2"], "secret reply to M2"))
    s.later = {ids[k] for k in ("E1", "T1e", "T2", "R1", "N", "N1", "M2r")}
    return s


def assert_left_view(s: Scene, event: dict[str, Any]) -> None:
    """M as bob, who left after E0, T1 and R0, may see it."""
    rel = event["unsigned"]["m.relations"]
    assert rel["m.replace"]["event_id"] == s.ids["E0"]
    assert rel["m.replace"]["content"]["m.new_content"]["body"] == "v1"
    thread = rel["m.thread"]
    assert thread["count"] == 1 and thread["current_user_participated"] is False
    assert thread["latest_event"]["event_id"] == s.ids["T1"]
    assert "m.relations" not in thread["latest_event"].get("unsigned", {})  # T1e is later
    assert rel["m.reference"] == {"chunk": [{"event_id": s.ids["R0"]}]}
    assert "secret" not in json.dumps(event)


def assert_stayed_view(s: Scene, event: dict[str, Any]) -> None:
    """M as carol, who stayed."""
    rel = event["unsigned"]["m.relations"]
    assert rel["m.replace"]["event_id"] == s.ids["E1"]
    thread = rel["m.thread"]
    assert thread["count"] == 2 and thread["current_user_participated"] is True
    assert thread["latest_event"]["event_id"] == s.ids["T2"]
    assert rel["m.reference"]["chunk"] == [{"event_id": s.ids["R0"]}, {"event_id": s.ids["R1"]}]


def by_id(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["event_id"]: e for e in events}


@pytest.mark.parametrize("how", ["kick", "ban", "leave"])
async def test_nothing_after_leaving_is_bundled(make_client: Any, how: str) -> None:
    s = await scene(make_client, how)
    room, m = q(s.room_id), q(s.ids["M"])
    for reader, check in ((s.bob, assert_left_view), (s.carol, assert_stayed_view)):
        status, ev = await reader.get(f"rooms/{room}/event/{m}")
        assert status == 200, ev
        check(s, ev)

        status, page = await reader.get(f"rooms/{room}/messages", params={"dir": "b", "limit": "50"})
        assert status == 200, page
        events = by_id(page["chunk"])
        check(s, events[s.ids["M"]])

        status, ctx = await reader.get(f"rooms/{room}/context/{m}", params={"limit": "20"})
        assert status == 200, ctx
        check(s, ctx["event"])
        around = by_id(ctx["events_before"] + ctx["events_after"])

        status, threads = await reader.get(f"{V1}/rooms/{room}/threads")
        assert status == 200, threads
        roots = [e["event_id"] for e in threads["chunk"]]
        check(s, by_id(threads["chunk"])[s.ids["M"]])

        status, rels = await reader.get(f"{V1}/rooms/{room}/relations/{m}", params={"limit": "50"})
        assert status == 200, rels
        related = {e["event_id"] for e in rels["chunk"]}
        status, t1_rels = await reader.get(f"{V1}/rooms/{room}/relations/{q(s.ids['T1'])}")
        assert status == 200, t1_rels

        if reader is s.bob:
            assert not s.later & set(events) and not s.later & set(around)
            # M2's thread only began after bob left: to him it is no thread.
            assert "m.relations" not in events[s.ids["M2"]].get("unsigned", {})
            assert "m.relations" not in around[s.ids["M2"]].get("unsigned", {})
            assert roots == [s.ids["M"]]
            assert related == {s.ids["E0"], s.ids["T1"], s.ids["R0"]}
            assert t1_rels["chunk"] == []
            assert "secret" not in json.dumps([page, ctx, threads, rels])
        else:
            assert s.later <= set(events)
            assert roots == [s.ids["M2"], s.ids["N"], s.ids["M"]]
            assert related == {s.ids[k] for k in ("E0", "T1", "R0", "E1", "T2", "R1")}
            assert [e["event_id"] for e in t1_rels["chunk"]] == [s.ids["T1e"]]
            m2_thread = events[s.ids["M2"]]["unsigned"]["m.relations"]["m.thread"]
            assert m2_thread["latest_event"]["event_id"] == s.ids["M2r"]


async def test_threads_participated_and_pages_judge_visible_replies(make_client: Any) -> None:
    s = await scene(make_client, "kick")
    room = q(s.room_id)
    status, mine = await s.bob.get(f"{V1}/rooms/{room}/threads", params={"include": "participated"})
    assert status == 200 and mine["chunk"] == []
    status, first = await s.bob.get(f"{V1}/rooms/{room}/threads", params={"limit": "1"})
    assert status == 200, first
    assert [e["event_id"] for e in first["chunk"]] == [s.ids["M"]] and "next_batch" not in first


async def test_sync_of_a_left_room(make_client: Any) -> None:
    tokens: dict[str, str] = {}

    async def mark(s: Scene) -> None:
        tokens["before"] = (await sync(s.bob))["next_batch"]

    s = await scene(make_client, "kick", before_leave=mark)
    flt = json.dumps({"room": {"include_leave": True, "timeline": {"limit": 50}}})
    initial = await sync(s.bob, filter=flt)
    assert s.room_id not in section(initial, "rooms", "join")
    left = section(initial, "rooms", "leave")[s.room_id]
    events = by_id(events_of(left, "timeline"))
    assert not s.later & set(events)
    assert_left_view(s, events[s.ids["M"]])
    assert "secret" not in json.dumps(left)

    # An incremental sync over the leave: the timeline ends at the leave, nothing bundled after.
    body = await sync(s.bob, tokens["before"])
    assert s.room_id not in section(body, "rooms", "join")
    left = section(body, "rooms", "leave")[s.room_id]
    assert events_of(left, "timeline")[-1]["type"] == "m.room.member"
    assert "secret" not in json.dumps(left)
    later = await sync(s.bob, body["next_batch"])
    assert s.room_id not in section(later, "rooms", "join") and s.room_id not in section(later, "rooms", "leave")

    status, page = await s.carol.get("sync", params={"filter": flt})
    assert status == 200
    assert_stayed_view(s, by_id(events_of(section(page, "rooms", "join")[s.room_id], "timeline"))[s.ids["M"]])


async def test_rejoin_under_joined_visibility(make_client: Any) -> None:
    s = await scene(make_client, "leave", hv="joined")
    room, m = q(s.room_id), q(s.ids["M"])
    assert (await s.bob.post(f"join/{room}", {}))[0] == 200

    # What was sent while bob was away is not in his timeline nor in what is bundled.
    flt = json.dumps({"room": {"timeline": {"limit": 50}}})
    body = await sync(s.bob, filter=flt)
    timeline = by_id(events_of(section(body, "rooms", "join")[s.room_id], "timeline"))
    assert not s.later & set(timeline)
    assert_left_view(s, timeline[s.ids["M"]])
    status, ev = await s.bob.get(f"rooms/{room}/event/{m}")
    assert status == 200
    assert_left_view(s, ev)
    status, page = await s.bob.get(f"rooms/{room}/messages", params={"dir": "b", "limit": "50"})
    assert_left_view(s, by_id(page["chunk"])[s.ids["M"]])
    status, threads = await s.bob.get(f"{V1}/rooms/{room}/threads")
    assert [e["event_id"] for e in threads["chunk"]] == [s.ids["M"]]

    # What is sent after his return he sees again: the newest edit he may see, the count of
    # the replies he may see.
    e2 = await send(s.alice, s.room_id, edit(s.ids["M"], "v3"))
    t3 = await send(s.carol, s.room_id, thread_reply(s.ids["M"], "welcome back"))
    status, ev = await s.bob.get(f"rooms/{room}/event/{m}")
    rel = ev["unsigned"]["m.relations"]
    assert rel["m.replace"]["event_id"] == e2
    assert rel["m.thread"]["count"] == 2 and rel["m.thread"]["latest_event"]["event_id"] == t3
    body = await sync(s.bob, body["next_batch"])
    assert {e2, t3} <= set(by_id(events_of(section(body, "rooms", "join")[s.room_id], "timeline")))
    status, ev = await s.carol.get(f"rooms/{room}/event/{m}")
    assert ev["unsigned"]["m.relations"]["m.thread"]["count"] == 3


async def search(client: Client, term: str, **criteria: Any) -> dict[str, Any]:
    status, body = await client.post(
        "search", {"search_categories": {"room_events": {"search_term": term, **criteria}}})
    assert status == 200, body
    return body["search_categories"]["room_events"]  # type: ignore[no-any-return]


async def test_search_after_leaving_and_rejoining(make_client: Any) -> None:
    s = await scene(make_client, "leave", hv="joined")
    assert (await search(s.bob, "secret"))["results"] == []
    assert (await search(s.bob, "original"))["results"] == []  # not in the room any more

    assert (await s.bob.post(f"join/{q(s.room_id)}", {}))[0] == 200
    assert (await search(s.bob, "secret"))["results"] == []
    found = await search(s.bob, "original", event_context={"before_limit": 3, "after_limit": 10})
    (hit,) = found["results"]
    assert hit["result"]["event_id"] == s.ids["M"]
    assert_left_view(s, hit["result"])
    after = {e["event_id"] for e in hit["context"]["events_after"]}
    assert s.ids["M2"] in after and not s.later & after
    assert "secret" not in json.dumps(found)

    (hit,) = (await search(s.carol, "original"))["results"]
    assert_stayed_view(s, hit["result"])
    found = {r["result"]["event_id"] for r in (await search(s.carol, "secret"))["results"]}
    assert {s.ids[k] for k in ("T2", "R1", "N", "N1", "M2r")} <= found


async def test_no_push_after_leaving(make_server: Any, http: Any, gateway: Gateway) -> None:  # noqa: F811
    srv = make_server({"VECHE_PUSH__ENABLED": "true",
                       "VECHE_PUSH__IP_RANGE_ALLOWLIST": '["127.0.0.1/32"]'}, dev=True)
    alice, bob, room_id = await room_with(lambda: Client(http, srv.base_url), preset="public_chat")
    dave = await Client(http, srv.base_url).register()
    assert (await dave.post(f"join/{q(room_id)}", {}))[0] == 200
    for who, key in ((bob, "bob-key"), (dave, "dave-key")):
        assert (await who.post("pushers/set", pusher(gateway.url, key)))[0] == 200
    root = await send(alice, room_id, text("hello both"))
    await asyncio.sleep(1)
    assert {n["notification"]["devices"][0]["pushkey"] for n in gateway.received} == {
        "bob-key", "dave-key"}

    gateway.received.clear()
    await remove("kick", alice, bob, room_id)
    assert (await dave.post(f"rooms/{q(room_id)}/leave", {}))[0] == 200
    await send(alice, room_id, text(f"{bob.user_id} {dave.user_id} are you there?"))
    await send(alice, room_id, edit(root, "hello both, edited"))
    await send(alice, room_id, thread_reply(root, "a thread"))
    await asyncio.sleep(1.5)
    assert gateway.received == []

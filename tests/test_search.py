"""Server-side search: finds words (and word prefixes, any case, Cyrillic too) in messages,
names and topics of the user's rooms, ranks or orders by time, pages, shows context; never
finds redacted text, other people's rooms, history hidden from the user, or encrypted
messages."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.sync_helpers import room_with, send, set_state


async def search(client: Any, term: str, next_batch: str | None = None, **criteria: Any
                 ) -> dict[str, Any]:
    status, body = await client.post(
        "search", {"search_categories": {"room_events": {"search_term": term, **criteria}}},
        params={"next_batch": next_batch} if next_batch else None)
    assert status == 200, body
    return body["search_categories"]["room_events"]  # type: ignore[no-any-return]


def bodies(found: dict[str, Any]) -> list[str]:
    return [r["result"]["content"].get("body") for r in found["results"]]


async def test_find_rank_order_page_and_context(make_client: Any) -> None:
    alice, bob, room = await room_with(make_client)
    await send(alice, room, "the quarterly budget meeting moved to Friday")
    await send(bob, room, "Budget? which budget")
    await send(alice, room, "Встреча по бюджету в пятницу")
    await send(bob, room, "unrelated chatter")
    await set_state(alice, room, "m.room.topic", {"topic": "Budgetary planning"})

    found = await search(bob, "budget", keys=["content.body"], order_by="recent")
    assert bodies(found) == ["Budget? which budget", "the quarterly budget meeting moved to Friday"]
    assert found["count"] == 2 and found["highlights"] == ["budget"]
    # Prefix match and case folding, in any script.
    assert bodies(await search(bob, "бюдж")) == ["Встреча по бюджету в пятницу"]
    assert bodies(await search(bob, "QUARTER fri")) == ["the quarterly budget meeting moved to Friday"]
    # Every word must match; a topic is found by its key.
    assert bodies(await search(bob, "budget nothing")) == []
    topic = await search(bob, "budgetary", keys=["content.topic"])
    assert [r["result"]["content"]["topic"] for r in topic["results"]] == ["Budgetary planning"]
    # By rank, the message saying "budget" twice comes first.
    ranked = await search(bob, "budget", keys=["content.body"])
    assert bodies(ranked)[0] == "Budget? which budget"
    assert ranked["results"][0]["rank"] >= ranked["results"][1]["rank"]

    first = await search(bob, "budget", order_by="recent", filter={"limit": 1})
    assert len(first["results"]) == 1 and first["count"] == 3
    seen = [first["results"][0]["result"]["event_id"]]
    token = first.get("next_batch")
    while token:
        page = await search(bob, "budget", token, order_by="recent", filter={"limit": 1})
        seen += [r["result"]["event_id"] for r in page["results"]]
        token = page.get("next_batch")
    assert len(seen) == len(set(seen)) == 3

    ctx = await search(bob, "unrelated", event_context={"before_limit": 1, "after_limit": 1,
                                                          "include_profile": True})
    context = ctx["results"][0]["context"]
    assert [e["content"]["body"] for e in context["events_before"]] == ["Встреча по бюджету в пятницу"]
    assert [e["type"] for e in context["events_after"]] == ["m.room.topic"]
    assert set(context["profile_info"]) == {alice.user_id, bob.user_id}
    assert (await search(bob, "unrelated", include_state=True))["state"][room]


async def test_never_finds_what_the_user_may_not_read(make_client: Any) -> None:
    alice, bob, room = await room_with(make_client)
    secret = await send(alice, room, "zebra crossing plan")
    assert (await alice.put(f"rooms/{quote(room)}/redact/{quote(secret)}/r1", {}))[0] == 200
    assert bodies(await search(bob, "zebra")) == []
    # Another room bob is not in.
    carol = await make_client().register()
    other = (await carol.post("createRoom", {"preset": "private_chat"}))[1]["room_id"]
    await set_state(carol, other, "m.room.history_visibility", {"history_visibility": "joined"})
    await send(carol, other, "zebra stripes elsewhere")
    assert bodies(await search(bob, "zebra")) == []
    assert bodies(await search(carol, "zebra")) == ["zebra stripes elsewhere"]
    # History from before dave joined a "joined"-visibility room is hidden from him.
    dave = await make_client().register()
    assert (await carol.post(f"rooms/{quote(other)}/invite", {"user_id": dave.user_id}))[0] == 200
    assert (await dave.post(f"join/{quote(other)}", {}))[0] == 200
    await send(carol, other, "zebra after dave")
    assert bodies(await search(dave, "zebra")) == ["zebra after dave"]
    # An encrypted message has no text the server could index.
    status, _ = await alice.put(f"rooms/{quote(room)}/send/m.room.encrypted/e1", {
        "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "zebra", "sender_key": "k",
        "session_id": "s", "device_id": "D"})
    assert status == 200
    assert bodies(await search(bob, "zebra")) == []


async def test_bad_search_requests(make_client: Any) -> None:
    alice = await make_client().register()
    for body, errcode in (({}, "M_MISSING_PARAM"),
                          ({"search_categories": []}, "M_BAD_JSON"),
                          ({"search_categories": {"room_events": {}}}, "M_MISSING_PARAM"),
                          ({"search_categories": {"room_events": {"search_term": 5}}}, "M_BAD_JSON"),
                          ({"search_categories": {"room_events": {"search_term": "x",
                                                                  "keys": ["content.url"]}}}, "M_BAD_JSON"),
                          ({"search_categories": {"room_events": {"search_term": "x",
                                                                  "order_by": "size"}}}, "M_BAD_JSON")):
        status, out = await alice.post("search", body)
        assert (status, out.get("errcode")) == (400, errcode), body
    status, out = await alice.post("search", {"search_categories": {"room_events": {
        "search_term": "x"}}}, params={"next_batch": "nope"})
    assert (status, out["errcode"]) == (400, "M_INVALID_PARAM")
    # Query syntax of either database is just text.
    assert bodies(await search(alice, 'a" OR b* NEAR(') ) == []
    assert await alice.post("search", {"search_categories": {}}) == (200, {"search_categories": {}})

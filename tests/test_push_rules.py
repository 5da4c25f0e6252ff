"""Push rules CRUD and the unread notification counts they drive."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tests.sync_helpers import events_of, joined, room_with, send, sync

RULES = "pushrules/global"


def _ids(ruleset: dict[str, Any], kind: str) -> list[str]:
    return [r["rule_id"] for r in ruleset[kind]]


async def test_default_rules(make_client: Any) -> None:
    alice = await make_client().register()
    status, body = await alice.get("pushrules/")
    assert status == 200
    assert ".m.rule.master" in _ids(body["global"], "override")
    assert ".m.rule.message" in _ids(body["global"], "underride")
    status, glob = await alice.get("pushrules/global/")
    assert status == 200 and glob == body["global"]
    status, rule = await alice.get(f"{RULES}/override/.m.rule.master")
    assert status == 200 and rule["enabled"] is False and rule["default"] is True
    status, err = await alice.get(f"{RULES}/override/nope")
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"


async def test_put_ordering_enable_actions_delete(make_client: Any) -> None:
    alice = await make_client().register()
    for rule_id in ("a", "b"):
        status, err = await alice.put(f"{RULES}/content/{rule_id}",
                                      {"pattern": rule_id, "actions": ["notify"]})
        assert status == 200, err
    _, body = await alice.get("pushrules/")
    user_rules = [r for r in _ids(body["global"], "content") if not r.startswith(".")]
    assert user_rules == ["b", "a"]  # a new rule is the most important
    assert (await alice.put(f"{RULES}/content/c", {"pattern": "c", "actions": []},
                            params={"after": "b"}))[0] == 200
    assert (await alice.put(f"{RULES}/content/d", {"pattern": "d", "actions": []},
                            params={"before": "b"}))[0] == 200
    _, body = await alice.get("pushrules/")
    assert [r for r in _ids(body["global"], "content") if not r.startswith(".")] == ["d", "b", "c", "a"]
    status, err = await alice.put(f"{RULES}/content/e", {"pattern": "e", "actions": []},
                                  params={"before": "missing"})
    assert status == 400
    status, err = await alice.put(f"{RULES}/content/.m.rule.x", {"pattern": "e", "actions": []})
    assert status == 400
    status, err = await alice.put(f"{RULES}/content/f", {"actions": []})
    assert status == 400
    # enabled / actions, on user and default rules
    assert (await alice.get(f"{RULES}/content/a/enabled")) == (200, {"enabled": True})
    assert (await alice.put(f"{RULES}/content/a/enabled", {"enabled": False}))[0] == 200
    assert (await alice.get(f"{RULES}/content/a/enabled")) == (200, {"enabled": False})
    assert (await alice.put(f"{RULES}/override/.m.rule.master/enabled", {"enabled": True}))[0] == 200
    _, master = await alice.get(f"{RULES}/override/.m.rule.master")
    assert master["enabled"] is True
    new_actions = ["notify", {"set_tweak": "sound", "value": "ping"}]
    assert (await alice.put(f"{RULES}/underride/.m.rule.message/actions", {"actions": new_actions}))[0] == 200
    assert (await alice.get(f"{RULES}/underride/.m.rule.message/actions")) == (200, {"actions": new_actions})
    assert (await alice.put(f"{RULES}/content/a/enabled", {"enabled": "yes"}))[0] == 400
    assert (await alice.put(f"{RULES}/content/zzz/enabled", {"enabled": True}))[0] == 404
    assert (await alice.put(f"{RULES}/content/a/actions", {"actions": ["bogus"]}))[0] == 400
    # delete
    assert (await alice.delete(f"{RULES}/content/a"))[0] == 200
    assert (await alice.get(f"{RULES}/content/a"))[0] == 404
    assert (await alice.delete(f"{RULES}/content/a"))[0] == 404
    assert (await alice.delete(f"{RULES}/override/.m.rule.master"))[0] in (400, 403)
    assert (await alice.get(f"{RULES}/bogus/x"))[0] == 400
    # the ruleset shows in /sync account data
    body = await sync(alice)
    pr = [e for e in events_of(body, "account_data") if e["type"] == "m.push_rules"]
    assert [r for r in _ids(pr[0]["content"]["global"], "content") if not r.startswith(".")] == ["d", "b", "c"]


async def test_unread_counts_and_highlights(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    first = await sync(bob)
    await send(alice, room_id, "hello")
    await send(alice, room_id, "hey", **{"m.mentions": {"user_ids": [bob.user_id]}})
    last = await send(alice, room_id, "third")
    body = await sync(bob, first["next_batch"])
    counts = joined(body, room_id)["unread_notifications"]
    assert counts == {"notification_count": 3, "highlight_count": 1}
    # alice's own messages don't count for her
    assert joined(await sync(alice), room_id)["unread_notifications"]["notification_count"] == 0
    assert (await bob.post(f"rooms/{quote(room_id)}/receipt/m.read/{quote(last)}", {}))[0] == 200
    body = await sync(bob, body["next_batch"])
    assert joined(body, room_id)["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    # a room rule that does not notify silences the room
    assert (await bob.put(f"{RULES}/room/{quote(room_id)}", {"actions": []}))[0] == 200
    await send(alice, room_id, "quiet")
    body = await sync(bob, body["next_batch"])
    assert joined(body, room_id)["unread_notifications"]["notification_count"] == 0
    assert (await bob.delete(f"{RULES}/room/{quote(room_id)}"))[0] == 200
    await send(alice, room_id, "loud")
    body = await sync(bob, body["next_batch"])
    assert joined(body, room_id)["unread_notifications"]["notification_count"] == 1
    # replying in the room reads it
    await send(bob, room_id, "ok")
    body = await sync(bob, body["next_batch"])
    assert joined(body, room_id)["unread_notifications"]["notification_count"] == 0


async def test_thread_notification_counts(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    root = await send(alice, room_id, "root")
    t1 = await send(alice, room_id, "t1", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    await send(alice, room_id, "t2", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    flt = json.dumps({"room": {"timeline": {"unread_thread_notifications": True}}})
    body = await sync(bob, filter=flt)
    room = joined(body, room_id)
    assert room["unread_notifications"]["notification_count"] == 1
    assert room["unread_thread_notifications"][root]["notification_count"] == 2
    # without the filter everything is counted together
    assert joined(await sync(bob), room_id)["unread_notifications"]["notification_count"] == 3
    # a threaded receipt only reads its thread
    assert (await bob.post(f"rooms/{quote(room_id)}/receipt/m.read/{quote(t1)}", {"thread_id": root}))[0] == 200
    room = joined(await sync(bob, filter=flt), room_id)
    assert room["unread_notifications"]["notification_count"] == 1
    assert room["unread_thread_notifications"][root]["notification_count"] == 1
    assert (await bob.post(f"rooms/{quote(room_id)}/receipt/m.read/{quote(root)}", {"thread_id": "main"}))[0] == 200
    room = joined(await sync(bob, filter=flt), room_id)
    assert room["unread_notifications"]["notification_count"] == 0
    assert room["unread_thread_notifications"][root]["notification_count"] == 1


async def test_counts_stay_right_in_ephemeral_only_updates(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    await send(alice, room_id, "one")
    await send(alice, room_id, "two")
    first = await sync(bob)
    assert joined(first, room_id)["unread_notifications"]["notification_count"] == 2
    assert (await alice.put(f"rooms/{quote(room_id)}/typing/{quote(alice.user_id)}",
                            {"typing": True, "timeout": 5000}))[0] == 200
    body = await sync(bob, first["next_batch"], timeout="5000")
    room = joined(body, room_id)
    assert events_of(room, "timeline") == []
    assert room["unread_notifications"]["notification_count"] == 2


async def test_counts_in_a_bigger_room_follow_each_members_rules(make_client: Any) -> None:
    """Members with default rules share one evaluation; mentions and custom rules still count."""
    alice, bob, room_id = await room_with(make_client, preset="public_chat")
    others = [await make_client().register() for _ in range(3)]
    for c in others:
        assert (await c.post(f"join/{quote(room_id)}", {}))[0] == 200
    carol, dave, erin = others
    # dave silences the room with a custom rule; erin keeps the defaults
    assert (await dave.put(f"{RULES}/room/{quote(room_id)}", {"actions": []}))[0] == 200
    since = {c.user_id: (await sync(c))["next_batch"] for c in (bob, *others)}
    await send(alice, room_id, "for everyone")
    await send(alice, room_id, "carol?", **{"m.mentions": {"user_ids": [carol.user_id]}})
    await send(alice, room_id, "erin?", **{"m.mentions": {"user_ids": [erin.user_id]}})
    expected = {bob: (3, 0), carol: (3, 1), dave: (0, 0), erin: (3, 1)}
    for client, (notes, highlights) in expected.items():
        body = await sync(client, since[client.user_id])
        assert joined(body, room_id)["unread_notifications"] == {
            "notification_count": notes, "highlight_count": highlights}, client.user_id


async def test_messages_before_a_join_are_not_unread(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client, preset="public_chat")
    await send(alice, room_id, "before carol")
    await send(alice, room_id, "@room before carol", **{"m.mentions": {"room": True}})
    carol = await make_client().register()
    assert (await carol.post(f"join/{quote(room_id)}", {}))[0] == 200
    await send(alice, room_id, "after carol")
    room = joined(await sync(carol), room_id)
    assert room["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    # bob was there for all three, including the @room highlight
    room = joined(await sync(bob), room_id)
    assert room["unread_notifications"] == {"notification_count": 3, "highlight_count": 1}

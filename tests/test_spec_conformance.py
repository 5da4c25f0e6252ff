"""Every implemented client-server endpoint answers a valid request with a response that
validates against the spec's schema (the test client checks each one), and none is missed."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from tests import conftest
from tests.conftest import ServerProcess
from tests.spec_schema import find_operation
from tests.walks import WalkContext, all_walks
from veche.http.modules import all_routes


def q(value: str) -> str:
    return quote(value, safe="")


def spec_template(method: str, route_path: str) -> str | None:
    sample = re.sub(r"\{[^}]+\}", "x", route_path)
    for candidate in (sample, sample + "/"):
        try:
            return find_operation(method, candidate).template
        except LookupError:
            continue
    return None


async def test_walk_every_endpoint(homeserver: ServerProcess, make_client: Any) -> None:
    conftest.VALIDATED.clear()
    alice = await make_client().register(password="walk-password")
    bob = await make_client().register()
    anon = make_client()
    me = q(alice.user_id)

    async def ok(result: tuple[int, Any]) -> Any:
        status, body = result
        assert 200 <= status < 300, body
        return body

    await ok(await anon.get("/_matrix/client/versions"))
    await ok(await anon.get("login", token=False))
    await ok(await anon.get("register/available", params={"username": "walkfree"}, token=False))
    await ok(await anon.get("/_matrix/client/v1/register/m.login.registration_token/validity",
                            params={"token": "nope"}, token=False))
    login = await ok(await anon.post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": "walk-password", "refresh_token": True}, token=False))
    await ok(await anon.post("refresh", {"refresh_token": login["refresh_token"]}, token=False))
    await ok(await alice.get("account/whoami"))
    await ok(await alice.get("capabilities"))
    await ok(await alice.get("devices"))
    await ok(await alice.get(f"devices/{q(alice.device_id)}"))
    await ok(await alice.put(f"devices/{q(alice.device_id)}", {"display_name": "Walker"}))
    await ok(await alice.put(f"profile/{me}/displayname", {"displayname": "Alice"}))
    await ok(await alice.get(f"profile/{me}"))
    await ok(await alice.get(f"profile/{me}/displayname"))

    room = await ok(await alice.post("createRoom", {
        "preset": "public_chat", "name": "Walk", "room_alias_name": f"walk{bob.user_id[2:8]}",
        "visibility": "public"}))
    rid = q(room["room_id"])
    alias = q(f"#walk2{bob.user_id[2:8]}:{homeserver.server_name}")
    await ok(await alice.put(f"directory/room/{alias}", {"room_id": room["room_id"]}))
    await ok(await alice.get(f"directory/room/{alias}"))
    await ok(await alice.get(f"rooms/{rid}/aliases"))
    await ok(await alice.delete(f"directory/room/{alias}"))
    await ok(await alice.get(f"directory/list/room/{rid}"))
    await ok(await alice.put(f"directory/list/room/{rid}", {"visibility": "public"}))
    await ok(await alice.get("publicRooms"))
    await ok(await alice.post("publicRooms", {"filter": {"generic_search_term": "walk"}}))

    await ok(await alice.post(f"rooms/{rid}/invite", {"user_id": bob.user_id}))
    await ok(await bob.post(f"rooms/{rid}/join", {}))
    sent = await ok(await alice.put(f"rooms/{rid}/send/m.room.message/w1",
                                    {"msgtype": "m.text", "body": "hello"}))
    eid = q(sent["event_id"])
    await ok(await bob.put(f"rooms/{rid}/send/m.reaction/w2", {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": sent["event_id"], "key": "+1"}}))
    await ok(await bob.put(f"rooms/{rid}/send/m.room.message/w3", {
        "msgtype": "m.text", "body": "in thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": sent["event_id"]}}))
    await ok(await alice.put(f"rooms/{rid}/state/m.room.topic", {"topic": "walking"}))
    await ok(await alice.put(f"rooms/{rid}/state/org.example.thing/key", {"x": 1}))
    await ok(await alice.get(f"rooms/{rid}/state"))
    await ok(await alice.get(f"rooms/{rid}/state/m.room.topic"))
    await ok(await alice.get(f"rooms/{rid}/state/org.example.thing/key"))
    await ok(await alice.get(f"rooms/{rid}/event/{eid}"))
    await ok(await alice.get(f"rooms/{rid}/context/{eid}"))
    await ok(await alice.get(f"rooms/{rid}/messages", params={"dir": "b"}))
    await ok(await alice.get(f"rooms/{rid}/members"))
    await ok(await alice.get(f"rooms/{rid}/joined_members"))
    await ok(await alice.get("joined_rooms"))
    await ok(await alice.get(f"/_matrix/client/v1/rooms/{rid}/relations/{eid}"))
    await ok(await alice.get(f"/_matrix/client/v1/rooms/{rid}/relations/{eid}/m.annotation"))
    await ok(await alice.get(f"/_matrix/client/v1/rooms/{rid}/relations/{eid}/m.annotation/m.reaction"))
    await ok(await alice.get(f"/_matrix/client/v1/rooms/{rid}/threads"))
    await ok(await alice.get(f"/_matrix/client/v1/rooms/{rid}/timestamp_to_event",
                             params={"ts": "0", "dir": "f"}))
    await ok(await alice.put(f"rooms/{rid}/typing/{me}", {"typing": True, "timeout": 1000}))
    await ok(await bob.post(f"rooms/{rid}/receipt/m.read/{eid}", {}))
    await ok(await bob.post(f"rooms/{rid}/read_markers", {"m.fully_read": sent["event_id"]}))
    await ok(await alice.put(f"user/{me}/account_data/org.example.a", {"a": 1}))
    await ok(await alice.get(f"user/{me}/account_data/org.example.a"))
    await ok(await alice.put(f"user/{me}/rooms/{rid}/account_data/org.example.b", {"b": 1}))
    await ok(await alice.get(f"user/{me}/rooms/{rid}/account_data/org.example.b"))
    flt = await ok(await alice.post(f"user/{me}/filter", {"room": {"timeline": {"limit": 5}}}))
    await ok(await alice.get(f"user/{me}/filter/{flt['filter_id']}"))
    await ok(await alice.get("sync", params={"filter": flt["filter_id"]}))
    await ok(await alice.get("pushrules/"))
    await ok(await alice.get("pushrules/global/"))
    await ok(await alice.put(f"presence/{me}/status", {"presence": "online", "status_msg": "walking"}))
    await ok(await alice.get(f"presence/{me}/status"))
    rule = "pushrules/global/override/org.example.walk"
    await ok(await alice.put(rule, {"conditions": [
        {"kind": "event_match", "key": "type", "pattern": "org.example"}], "actions": ["notify"]}))
    await ok(await alice.get(rule))
    await ok(await alice.put(f"{rule}/enabled", {"enabled": False}))
    await ok(await alice.get(f"{rule}/enabled"))
    await ok(await alice.put(f"{rule}/actions", {"actions": []}))
    await ok(await alice.get(f"{rule}/actions"))
    await ok(await alice.delete(rule))
    await ok(await alice.put(f"user/{me}/rooms/{rid}/tags/u.walk", {"order": 0.5}))
    await ok(await alice.get(f"user/{me}/rooms/{rid}/tags"))
    await ok(await alice.delete(f"user/{me}/rooms/{rid}/tags/u.walk"))
    await ok(await alice.post("user_directory/search", {"search_term": "alice"}))
    await ok(await bob.post(f"rooms/{rid}/report/{eid}", {"reason": "walk", "score": -100}))
    await ok(await bob.post(f"rooms/{rid}/report", {"reason": "walk"}))
    await ok(await bob.post(f"users/{me}/report", {"reason": "walk"}))
    red = await ok(await alice.put(f"rooms/{rid}/redact/{eid}/w4", {"reason": "walk"}))
    assert red["event_id"]

    ctx = WalkContext(homeserver=homeserver, make_client=make_client, alice=alice, bob=bob,
                      room_id=room["room_id"])
    for walk in all_walks():
        await walk(ctx)

    await ok(await alice.post(f"rooms/{rid}/kick", {"user_id": bob.user_id}))
    await ok(await alice.post(f"rooms/{rid}/ban", {"user_id": bob.user_id}))
    await ok(await alice.post(f"rooms/{rid}/unban", {"user_id": bob.user_id}))
    await ok(await bob.post(f"join/{rid}", {}))
    await ok(await bob.post(f"rooms/{rid}/leave", {}))
    await ok(await bob.post(f"rooms/{rid}/forget", {}))
    knock_room = await ok(await alice.post("createRoom", {"initial_state": [
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]}))
    await ok(await bob.post(f"knock/{q(knock_room['room_id'])}", {"reason": "let me in"}))
    await ok(await alice.post(f"rooms/{rid}/upgrade", {"new_version": "11"}))
    carol = await make_client().register(password="walk-password")
    uia = {"type": "m.login.password", "password": "walk-password",
           "identifier": {"type": "m.id.user", "user": carol.user_id}}
    extra = await ok(await anon.post("login", uia, token=False))
    another = await ok(await anon.post("login", uia, token=False))
    await ok(await carol.delete(f"devices/{q(extra['device_id'])}", {"auth": uia}))
    await ok(await carol.post("delete_devices", {"devices": [another["device_id"]], "auth": uia}))
    await ok(await carol.post("account/password", {"new_password": "walk-password-2", "auth": uia}))
    await ok(await carol.post("account/deactivate", {"auth": {**uia, "password": "walk-password-2"}}))
    await ok(await bob.post("logout", {}))
    await ok(await alice.post("logout/all", {}))

    implemented = {
        (r.method, r.path) for table in all_routes() for r in table  # type: ignore[attr-defined]
        # Unstable MSC endpoints are not in the spec; their own tests check their shape.
        if r.path.startswith("/_matrix/client") and "/unstable/" not in r.path
    }
    templates = {(m, p): spec_template(m, p) for m, p in implemented}
    undocumented = sorted(f"{m} {p}" for (m, p), t in templates.items() if t is None)
    assert not undocumented, f"routes the spec does not document: {undocumented}"
    missing = sorted({f"{m} {t}" for (m, _), t in templates.items()
                      if (m, t) not in conftest.VALIDATED})
    assert not missing, f"endpoints never validated against the spec: {missing}"

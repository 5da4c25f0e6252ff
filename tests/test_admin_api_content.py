"""Synapse's admin API for content: a user's media, deleting media (by ID and by age),
quarantine, registration tokens, event reports, server notices and the server version. The
documented fields, 403 M_FORBIDDEN for anyone but a server admin, and the effects: deleted and
quarantined media is no longer served, a deleted token no longer registers, a dismissed
report is gone, a notice reaches the user in their server-notices room."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.admin_helpers import SYNAPSE_ADMIN, assert_admin_only, make_admin
from tests.conftest import Client
from tests.sync_helpers import send, sync

V1 = SYNAPSE_ADMIN + "/v1"
MEDIA_FIELDS = {"created_ts", "last_access_ts", "media_id", "media_length", "media_type",
                "quarantined_by", "safe_from_quarantine", "upload_name"}
TOKEN_FIELDS = {"token", "uses_allowed", "pending", "completed", "expiry_time"}
REPORT_FIELDS = {"id", "received_ts", "room_id", "name", "event_id", "user_id", "reason",
                 "score", "sender", "canonical_alias"}


async def _upload(client: Any, data: bytes, name: str) -> tuple[str, str]:
    status, body = await client.request(
        "POST", f"/_matrix/media/v3/upload?filename={name}", data=data,
        headers={"Content-Type": "text/plain"})
    assert status == 200, body
    server, media_id = body["content_uri"][len("mxc://"):].split("/", 1)
    return server, media_id


async def _download(client: Any, server: str, media_id: str) -> tuple[int, Any]:
    return await client.get(  # type: ignore[no-any-return]
        f"/_matrix/client/v1/media/download/{server}/{media_id}")


async def test_non_admins_are_refused(homeserver: Any, make_client: Any) -> None:
    user = await make_client().register()
    server, media_id = await _upload(user, b"mine", "mine.txt")
    me = quote(user.user_id)
    for method, path, body in (
        ("GET", f"{V1}/users/{me}/media", None),
        ("DELETE", f"{V1}/media/{server}/{media_id}", {}),
        ("POST", f"{V1}/media/delete?before_ts={int(time.time() * 1000)}", {}),
        ("POST", f"{V1}/media/quarantine/{server}/{media_id}", {}),
        ("POST", f"{V1}/media/unquarantine/{server}/{media_id}", {}),
        ("GET", f"{V1}/registration_tokens", None),
        ("POST", f"{V1}/registration_tokens/new", {}),
        ("GET", f"{V1}/registration_tokens/abc", None),
        ("PUT", f"{V1}/registration_tokens/abc", {}),
        ("DELETE", f"{V1}/registration_tokens/abc", None),
        ("GET", f"{V1}/event_reports", None), ("GET", f"{V1}/event_reports/1", None),
        ("DELETE", f"{V1}/event_reports/1", None),
        ("POST", f"{V1}/send_server_notice", {"user_id": user.user_id, "content": {}}),
        ("PUT", f"{V1}/send_server_notice/t1", {"user_id": user.user_id, "content": {}}),
    ):
        await assert_admin_only(user, method, path, body)
    status, _ = await _download(user, server, media_id)
    assert status == 200  # none of the refused requests touched it


async def test_user_media_delete_and_quarantine(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice = await make_client().register()
    bob = await make_client().register()
    first = await _upload(alice, b"first file", "first.txt")
    await asyncio.sleep(0.01)
    second = await _upload(alice, b"the second file", "second.txt")
    status, listed = await admin.get(f"{V1}/users/{quote(alice.user_id)}/media")
    assert status == 200, listed
    assert listed["total"] == 2 and "next_token" not in listed
    assert [m["media_id"] for m in listed["media"]] == [second[1], first[1]]  # newest first
    entry = listed["media"][1]
    assert set(entry) >= MEDIA_FIELDS
    assert (entry["media_length"], entry["media_type"], entry["upload_name"],
            entry["quarantined_by"], entry["safe_from_quarantine"]) == (
        10, "text/plain", "first.txt", None, False)
    status, page = await admin.get(f"{V1}/users/{quote(alice.user_id)}/media", params={
        "limit": "1", "order_by": "media_length", "dir": "f"})
    assert [m["media_id"] for m in page["media"]] == [first[1]] and page["next_token"] == 1

    # Quarantine: nobody can download it until it is lifted.
    server, media_id = second
    assert await admin.post(f"{V1}/media/quarantine/{server}/{media_id}", {}) == (200, {})
    assert (await _download(bob, server, media_id))[0] == 404
    status, listed = await admin.get(f"{V1}/users/{quote(alice.user_id)}/media")
    assert [m["quarantined_by"] for m in listed["media"]] == [admin.user_id, None]
    assert await admin.post(f"{V1}/media/unquarantine/{server}/{media_id}", {}) == (200, {})
    assert (await _download(bob, server, media_id)) == (200, b"the second file")

    # Deletion: gone for good.
    status, out = await admin.delete(f"{V1}/media/{server}/{media_id}", {})
    assert (status, out) == (200, {"deleted_media": [media_id], "total": 1})
    assert (await _download(bob, server, media_id))[0] == 404
    assert (await _download(alice, server, media_id))[0] == 404
    assert (await admin.delete(f"{V1}/media/{server}/{media_id}", {}))[0] == 404
    assert (await admin.delete(f"{V1}/media/elsewhere.example/{media_id}", {}))[0] == 400
    assert (await admin.post(f"{V1}/media/quarantine/{server}/nothing", {}))[0] == 404
    status, listed = await admin.get(f"{V1}/users/{quote(alice.user_id)}/media")
    assert [m["media_id"] for m in listed["media"]] == [first[1]]
    assert (await _download(bob, *first))[0] == 200


async def test_delete_media_by_age(make_server: Any, http: aiohttp.ClientSession) -> None:
    """On a server of its own: deleting by age takes everything old enough."""
    srv = make_server({}, dev=True)
    admin = await make_admin(srv, lambda: Client(http, srv.base_url))
    alice = await Client(http, srv.base_url).register()
    old = await _upload(alice, b"old", "old.txt")
    big_old = await _upload(alice, b"old but larger", "big.txt")
    await asyncio.sleep(0.05)
    cutoff = int(time.time() * 1000)
    await asyncio.sleep(0.05)
    new = await _upload(alice, b"new", "new.txt")

    status, out = await admin.post(f"{V1}/media/delete", params={
        "before_ts": str(cutoff), "size_gt": "5"})
    assert (status, out) == (200, {"deleted_media": [big_old[1]], "total": 1})
    status, out = await admin.post(f"{V1}/media/delete", params={"before_ts": str(cutoff)})
    assert (status, out) == (200, {"deleted_media": [old[1]], "total": 1})
    assert (await _download(alice, *old))[0] == 404
    assert (await _download(alice, *big_old))[0] == 404
    assert (await _download(alice, *new)) == (200, b"new")
    # Deprecated form with the server name, and the guards.
    status, out = await admin.post(f"{V1}/media/{srv.server_name}/delete",
                                   params={"before_ts": str(cutoff)})
    assert (status, out["total"]) == (200, 0)
    assert (await admin.post(f"{V1}/media/delete", {}))[0] == 400
    assert (await admin.post(f"{V1}/media/delete", params={"before_ts": "1700000000"}))[0] == 400


async def test_registration_tokens(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    anyone = make_client()
    validity = "/_matrix/client/v1/register/m.login.registration_token/validity"
    name = f"tok{secrets.token_hex(4)}"
    status, made = await admin.post(f"{V1}/registration_tokens/new",
                                    {"token": name, "uses_allowed": 2})
    assert status == 200, made
    assert made == {"token": name, "uses_allowed": 2, "pending": 0, "completed": 0,
                    "expiry_time": None}
    assert (await anyone.get(validity, params={"token": name}, token=False))[1] == {"valid": True}
    status, random = await admin.post(f"{V1}/registration_tokens/new", {"length": 20})
    assert len(random["token"]) == 20 and set(random) == TOKEN_FIELDS

    status, listed = await admin.get(f"{V1}/registration_tokens")
    assert {name, random["token"]} <= {t["token"] for t in listed["registration_tokens"]}
    assert await admin.get(f"{V1}/registration_tokens/{name}") == (200, made)

    # Used up: no longer valid, and listed among the invalid ones.
    status, updated = await admin.put(f"{V1}/registration_tokens/{name}", {"uses_allowed": 0})
    assert (status, updated["uses_allowed"], updated["expiry_time"]) == (200, 0, None)
    assert (await anyone.get(validity, params={"token": name}, token=False))[1] == {"valid": False}
    status, invalid = await admin.get(f"{V1}/registration_tokens", params={"valid": "false"})
    assert name in [t["token"] for t in invalid["registration_tokens"]]
    status, valid = await admin.get(f"{V1}/registration_tokens", params={"valid": "true"})
    assert name not in [t["token"] for t in valid["registration_tokens"]]
    later = int(time.time() * 1000) + 3_600_000
    status, updated = await admin.put(f"{V1}/registration_tokens/{name}",
                                      {"uses_allowed": None, "expiry_time": later})
    assert (updated["uses_allowed"], updated["expiry_time"]) == (None, later)
    assert (await anyone.get(validity, params={"token": name}, token=False))[1] == {"valid": True}

    assert await admin.delete(f"{V1}/registration_tokens/{name}") == (200, {})
    assert (await anyone.get(validity, params={"token": name}, token=False))[1] == {"valid": False}
    for method, path, body in (
        ("GET", f"{V1}/registration_tokens/{name}", None),
        ("PUT", f"{V1}/registration_tokens/{name}", {"uses_allowed": 1}),
        ("DELETE", f"{V1}/registration_tokens/{name}", None),
    ):
        status, out = await admin.request(method, path, body)
        assert (status, out["errcode"]) == (404, "M_NOT_FOUND"), path
    for bad in ({"token": "no spaces"}, {"uses_allowed": -1}, {"length": 65},
                {"expiry_time": 1000}, {"token": random["token"]}):
        status, out = await admin.post(f"{V1}/registration_tokens/new", bad)
        assert (status, out["errcode"]) == (400, "M_INVALID_PARAM"), bad


async def test_event_reports(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice = await make_client().register()
    bob = await make_client().register()
    room = (await alice.post("createRoom", {"preset": "public_chat", "name": "Reported"}))[1][
        "room_id"]
    await bob.post(f"join/{quote(room)}", {})
    rude = await send(alice, room, "something rude")
    ruder = await send(alice, room, "something ruder")
    for event_id, reason in ((rude, "rude"), (ruder, "ruder")):
        status, _ = await bob.post(f"rooms/{quote(room)}/report/{quote(event_id)}",
                                   {"reason": reason})
        assert status == 200

    status, listed = await admin.get(f"{V1}/event_reports", params={"room_id": room})
    assert status == 200, listed
    assert listed["total"] == 2 and "next_token" not in listed
    newest = listed["event_reports"][0]
    assert set(newest) >= REPORT_FIELDS and "event_json" not in newest
    assert (newest["event_id"], newest["reason"], newest["user_id"], newest["sender"],
            newest["name"], newest["room_id"]) == (ruder, "ruder", bob.user_id, alice.user_id,
                                                   "Reported", room)
    assert isinstance(newest["id"], int)
    status, page = await admin.get(f"{V1}/event_reports", params={
        "room_id": room, "dir": "f", "limit": "1"})
    assert [r["event_id"] for r in page["event_reports"]] == [rude] and page["next_token"] == 1
    status, by_sender = await admin.get(f"{V1}/event_reports", params={
        "event_sender_user_id": alice.user_id, "user_id": bob.user_id})
    assert by_sender["total"] == 2

    status, detail = await admin.get(f"{V1}/event_reports/{newest['id']}")
    assert status == 200 and set(detail) >= REPORT_FIELDS | {"event_json"}
    assert detail["event_json"]["event_id"] == ruder
    assert detail["event_json"]["content"]["body"] == "something ruder"

    assert await admin.delete(f"{V1}/event_reports/{newest['id']}") == (200, {})
    assert (await admin.get(f"{V1}/event_reports/{newest['id']}"))[0] == 404
    assert (await admin.delete(f"{V1}/event_reports/{newest['id']}"))[0] == 404
    status, listed = await admin.get(f"{V1}/event_reports", params={"room_id": room})
    assert [r["event_id"] for r in listed["event_reports"]] == [rude]


async def test_server_notices(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    user = await make_client().register()
    since = (await sync(user))["next_batch"]
    status, out = await admin.post(f"{V1}/send_server_notice", {
        "user_id": user.user_id, "content": {"msgtype": "m.text", "body": "Maintenance at 6"}})
    assert status == 200, out
    first = out["event_id"]
    invites: dict[str, Any] = {}
    for _ in range(10):
        body = await sync(user, since, timeout="2000")
        invites = body.get("rooms", {}).get("invite", {})
        if invites:
            break
        since = body["next_batch"]
    (room, invite), = invites.items()
    state = {e["type"]: e for e in invite["invite_state"]["events"]}
    assert state["m.room.name"]["content"]["name"] == "Server Notices"
    system = f"@notices:{homeserver.server_name}"
    assert state["m.room.member"]["sender"] == system
    assert (await user.post(f"join/{quote(room)}", {}))[0] == 200
    status, tags = await user.get(f"user/{quote(user.user_id)}/rooms/{quote(room)}/tags")
    assert "m.server_notice" in tags["tags"]

    # The next notice lands in the same room; a retried PUT sends it once.
    for _ in range(2):
        status, again = await admin.put(f"{V1}/send_server_notice/n-{room[1:8]}", {
            "user_id": user.user_id, "content": {"msgtype": "m.text", "body": "Done"}})
        assert status == 200
    status, msgs = await user.get(f"rooms/{quote(room)}/messages", params={"dir": "b"})
    notices = [(e["event_id"], e["content"]["body"]) for e in msgs["chunk"]
               if e["type"] == "m.room.message"]
    assert notices == [(again["event_id"], "Done"), (first, "Maintenance at 6")]
    assert all(e["sender"] == system for e in msgs["chunk"] if e["type"] == "m.room.message")

    status, out = await admin.post(f"{V1}/send_server_notice", {
        "user_id": f"@nobody:{homeserver.server_name}", "content": {"body": "x"}})
    assert status == 404
    for bad in ({"content": {}}, {"user_id": user.user_id}, {"user_id": user.user_id,
                                                              "content": "text"}):
        assert (await admin.post(f"{V1}/send_server_notice", bad))[0] == 400


async def test_server_version(homeserver: Any, make_client: Any) -> None:
    status, body = await make_client().get(f"{V1}/server_version", token=False)
    assert status == 200 and body["server_version"].startswith("Veche ")


async def test_notices_sender_is_reserved(make_server: Any, http: aiohttp.ClientSession) -> None:
    """Before any notice was sent, nobody may register the notices account's name."""
    srv = make_server({}, dev=True)
    anyone = Client(http, srv.base_url)
    status, out = await anyone.get("register/available", params={"username": "notices"},
                                   token=False)
    assert (status, out["errcode"]) == (400, "M_USER_IN_USE")
    status, out = await anyone.post("register", {"username": "notices", "password": "p4ssw0rd!",
                                                 "auth": {"type": "m.login.dummy"}}, token=False)
    assert (status, out["errcode"]) == (400, "M_USER_IN_USE")
    assert (await anyone.get("register/available", params={"username": "noticed"},
                             token=False))[0] == 200


async def test_hostile_values_get_client_errors(homeserver: Any, make_client: Any) -> None:
    """Undecodable bytes, huge numbers and odd IDs in paths and queries: 4xx, never 500."""
    admin = await make_admin(homeserver, make_client)
    odd = ["%FF", "%ED%A0%80", "1e400", "99999999999999999999999", "-0", "%00", "x" * 3000]
    paths = [f"{SYNAPSE_ADMIN}/v2/users?name={{v}}", f"{SYNAPSE_ADMIN}/v2/users?from={{v}}",
             f"{SYNAPSE_ADMIN}/v2/users/{{v}}", f"{SYNAPSE_ADMIN}/v1/rooms?search_term={{v}}",
             f"{SYNAPSE_ADMIN}/v1/rooms?limit={{v}}", f"{SYNAPSE_ADMIN}/v1/rooms/{{v}}",
             f"{SYNAPSE_ADMIN}/v1/rooms/{{v}}/state?type={{v}}",
             f"{SYNAPSE_ADMIN}/v1/users/{{v}}/media", f"{V1}/event_reports?room_id={{v}}",
             f"{V1}/event_reports/{{v}}", f"{V1}/registration_tokens/{{v}}",
             f"{V1}/media/delete?before_ts={{v}}", f"{V1}/whois/{{v}}"]
    for template in paths:
        for value in odd:
            path = template.format(v=value)
            method = "POST" if "/media/delete" in path else "GET"
            status, body = await admin.request(method, path, {} if method == "POST" else None)
            assert status < 500, (path, status, body)

"""Account moderation: a server admin locks an account (it can do nothing but log out,
and keeps its sessions for when the lock lifts) or suspends it (it reads, leaves and
redacts its own events, but cannot join, invite, send or change its profile); whois shows
an account's sessions. Nobody else may do any of it."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.admin_helpers import make_admin
from tests.sync_helpers import room_with, send

V1 = "/_matrix/client/v1/admin"


async def test_lock_and_unlock(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice, bob, room = await room_with(make_client)
    me = quote(bob.user_id)
    for client in (alice, bob):
        status, body = await client.put(f"{V1}/lock/{me}", {"locked": True})
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await admin.get(f"{V1}/lock/{me}") == (200, {"locked": False})
    assert await admin.put(f"{V1}/lock/{me}", {"locked": True}) == (200, {"locked": True})
    assert await admin.get(f"{V1}/lock/{me}") == (200, {"locked": True})
    for path in ("account/whoami", "sync", f"rooms/{quote(room)}/messages"):
        status, body = await bob.get(path)
        assert (status, body["errcode"], body.get("soft_logout")) == (401, "M_USER_LOCKED", True), path
    # The session survives the lock.
    assert (await admin.put(f"{V1}/lock/{me}", {"locked": False}))[0] == 200
    assert (await bob.get("account/whoami"))[1]["user_id"] == bob.user_id
    # Logging out still works while locked.
    assert (await admin.put(f"{V1}/lock/{me}", {"locked": True}))[0] == 200
    assert (await bob.post("logout", {}))[0] == 200
    assert (await admin.put(f"{V1}/lock/{me}", {"locked": False}))[0] == 200
    assert (await bob.get("account/whoami"))[1]["errcode"] == "M_UNKNOWN_TOKEN"

    for path, status in ((f"{V1}/lock/{quote('@nobody:' + homeserver.server_name)}", 404),
                         (f"{V1}/lock/{quote('@someone:elsewhere.example')}", 404)):
        assert (await admin.get(path))[0] == status
    assert (await admin.put(f"{V1}/lock/{me}", {"locked": "yes"}))[0] == 400


async def test_suspension(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice, bob, room = await room_with(make_client, preset="public_chat")
    own = await send(bob, room, "before")
    theirs = await send(alice, room, "alice's")
    other = (await alice.post("createRoom", {"preset": "public_chat"}))[1]["room_id"]
    me = quote(bob.user_id)
    assert await admin.put(f"{V1}/suspend/{me}", {"suspended": True}) == (200, {"suspended": True})
    assert await admin.get(f"{V1}/suspend/{me}") == (200, {"suspended": True})

    r = quote(room)
    refused = [
        ("PUT", f"rooms/{r}/send/m.room.message/s1", {"msgtype": "m.text", "body": "no"}),
        ("PUT", f"rooms/{r}/state/m.room.topic", {"topic": "no"}),
        ("POST", f"join/{quote(other)}", {}),
        ("POST", "createRoom", {}),
        ("POST", f"rooms/{r}/invite", {"user_id": admin.user_id}),
        ("PUT", f"profile/{me}/displayname", {"displayname": "no"}),
        ("PUT", f"rooms/{r}/redact/{quote(theirs)}/s2", {}),
    ]
    for method, path, body in refused:
        status, out = await bob.request(method, path, body)
        assert (status, out.get("errcode")) == (403, "M_USER_SUSPENDED"), path
    status, out = await bob.put(f"rooms/{r}/typing/{me}", {"typing": True, "timeout": 30000})
    assert (status, out.get("errcode")) == (403, "M_USER_SUSPENDED")
    for method, path in (("POST", "/_matrix/media/v3/upload"), ("POST", "/_matrix/media/v1/create")):
        status, out = await bob.request(method, path, data=b"no",
                                        headers={"Content-Type": "text/plain"})
        assert (status, out.get("errcode")) == (403, "M_USER_SUSPENDED"), path
    # Reading, redacting one's own events and leaving still work.
    assert (await bob.get("sync"))[0] == 200
    assert (await bob.get(f"rooms/{r}/messages", params={"dir": "b"}))[0] == 200
    assert (await bob.put(f"rooms/{r}/redact/{quote(own)}/s3", {}))[0] == 200
    assert (await bob.post(f"rooms/{r}/leave", {}))[0] == 200

    assert (await admin.put(f"{V1}/suspend/{me}", {"suspended": False}))[0] == 200
    assert (await bob.post(f"join/{r}", {}))[0] == 200
    await send(bob, room, "after")


async def test_whois(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice = await make_client().register()
    bob = await make_client().register()
    await alice.get("account/whoami")
    status, body = await admin.get(f"admin/whois/{quote(alice.user_id)}")
    assert status == 200 and body["user_id"] == alice.user_id
    (session,) = body["devices"][alice.device_id]["sessions"]
    assert session["connections"][0]["ip"] == "127.0.0.1"
    assert (await alice.get(f"admin/whois/{quote(alice.user_id)}"))[0] == 200
    assert (await bob.get(f"admin/whois/{quote(alice.user_id)}"))[1]["errcode"] == "M_FORBIDDEN"

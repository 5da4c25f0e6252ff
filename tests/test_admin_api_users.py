"""Synapse's user admin API (/_synapse/admin/v2/users and friends): the documented fields,
403 M_FORBIDDEN for anyone but a server admin, and the effects an operator counts on: a
created account logs in, a reset password replaces the old one and ends the sessions, a
deactivated account's tokens die."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from tests.admin_helpers import SYNAPSE_ADMIN, assert_admin_only, login, make_admin

V1, V2 = SYNAPSE_ADMIN + "/v1", SYNAPSE_ADMIN + "/v2"
LIST_FIELDS = {"name", "is_guest", "admin", "user_type", "deactivated", "erased",
               "shadow_banned", "displayname", "avatar_url", "creation_ts", "locked"}
DETAIL_FIELDS = LIST_FIELDS | {"threepids", "external_ids", "appservice_id", "last_seen_ts",
                               "consent_server_notice_sent", "consent_version", "consent_ts",
                               "suspended"}


async def test_non_admins_are_refused(homeserver: Any, make_client: Any) -> None:
    user = await make_client().register()
    me = quote(user.user_id)
    for method, path, body in (
        ("GET", f"{V2}/users", None), ("GET", f"{V2}/users/{me}", None),
        ("PUT", f"{V2}/users/{me}", {"admin": True}),
        ("POST", f"{V1}/deactivate/{me}", {}),
        ("POST", f"{V1}/reset_password/{me}", {"new_password": "x"}),
        ("GET", f"{V2}/users/{me}/devices", None), ("GET", f"{V1}/whois/{me}", None),
        ("PUT", f"{V1}/users/{me}/admin", {"admin": True}),
    ):
        await assert_admin_only(user, method, path, body)
    # The refused PUT did not make them an admin.
    status, _ = await user.get(f"{V2}/users")
    assert status == 403


async def test_list_users_paging_and_search(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    tag = f"lst{secrets.token_hex(3)}"
    users = [await make_client().register(f"{tag}{i}") for i in range(5)]
    await users[4].put(f"profile/{quote(users[4].user_id)}/displayname", {"displayname": "Zed"})

    status, page = await admin.get(f"{V2}/users", params={"name": tag, "limit": "2"})
    assert status == 200, page
    assert page["total"] == 5 and page["next_token"] == "2"
    assert [u["name"] for u in page["users"]] == [users[0].user_id, users[1].user_id]
    assert set(page["users"][0]) >= LIST_FIELDS
    assert page["users"][0]["admin"] is False and page["users"][0]["deactivated"] is False
    assert isinstance(page["users"][0]["creation_ts"], int)
    names = [u["name"] for u in page["users"]]
    while "next_token" in page:
        status, page = await admin.get(f"{V2}/users", params={
            "name": tag, "limit": "2", "from": page["next_token"]})
        names += [u["name"] for u in page["users"]]
    assert names == [u.user_id for u in users]

    # Search matches display names too; order_by and dir reverse the order.
    status, found = await admin.get(f"{V2}/users", params={"name": "zed"})
    assert [u["name"] for u in found["users"]] == [users[4].user_id]
    status, rev = await admin.get(f"{V2}/users", params={"name": tag, "dir": "b"})
    assert [u["name"] for u in rev["users"]] == [u.user_id for u in reversed(users)]
    assert "next_token" not in rev

    # Deactivated accounts are left out unless asked for.
    assert (await admin.post(f"{V1}/deactivate/{quote(users[0].user_id)}", {}))[0] == 200
    status, active = await admin.get(f"{V2}/users", params={"name": tag})
    assert active["total"] == 4
    status, everyone = await admin.get(f"{V2}/users", params={"name": tag, "deactivated": "true"})
    assert everyone["total"] == 5
    assert [u["deactivated"] for u in everyone["users"]][0] is True

    # Locked accounts too, as Synapse's list does.
    assert (await admin.put(f"{V2}/users/{quote(users[1].user_id)}", {"locked": True}))[0] == 200
    status, unlocked = await admin.get(f"{V2}/users", params={"name": tag})
    assert users[1].user_id not in [u["name"] for u in unlocked["users"]]
    status, with_locked = await admin.get(f"{V2}/users", params={"name": tag, "locked": "true"})
    assert [u["locked"] for u in with_locked["users"] if u["name"] == users[1].user_id] == [True]
    assert (await users[1].get("account/whoami"))[1]["errcode"] == "M_USER_LOCKED"

    for params in ({"limit": "-1"}, {"from": "x"}, {"dir": "up"}, {"order_by": "shoe_size"},
                   {"deactivated": "maybe"}):
        status, out = await admin.get(f"{V2}/users", params=params)
        assert (status, out["errcode"]) in ((400, "M_INVALID_PARAM"),), params


async def test_create_modify_and_query(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    localpart = f"made{secrets.token_hex(3)}"
    user_id = f"@{localpart}:{homeserver.server_name}"
    path = f"{V2}/users/{quote(user_id)}"
    assert (await admin.get(path))[0] == 404
    status, made = await admin.put(path, {"password": "first-password-1",
                                          "displayname": "Made Here", "admin": False})
    assert status == 201, made
    assert set(made) >= DETAIL_FIELDS
    assert (made["name"], made["displayname"], made["admin"]) == (user_id, "Made Here", False)
    assert made["threepids"] == [] and made["external_ids"] == []

    status, body = await login(make_client(), localpart, "first-password-1")
    assert status == 200, body
    token = body["access_token"]
    client = make_client()
    client.access_token = token
    assert (await client.get("account/whoami"))[1]["user_id"] == user_id

    # Modifying: admin flag, display name, and a new password that logs the devices out.
    status, changed = await admin.put(path, {"admin": True, "displayname": "Renamed",
                                             "password": "second-password-2"})
    assert status == 200, changed
    assert (changed["admin"], changed["displayname"]) == (True, "Renamed")
    assert (await client.get("account/whoami"))[1]["errcode"] == "M_UNKNOWN_TOKEN"
    assert (await login(make_client(), localpart, "first-password-1"))[0] == 403
    assert (await login(make_client(), localpart, "second-password-2"))[0] == 200
    # Now an admin, the new account may use the admin API.
    client.access_token = (await login(make_client(), localpart, "second-password-2"))[1][
        "access_token"]
    assert (await client.get(f"{V2}/users/{quote(admin.user_id)}"))[0] == 200
    assert await admin.get(f"{V1}/users/{quote(user_id)}/admin") == (200, {"admin": True})
    assert await admin.put(f"{V1}/users/{quote(user_id)}/admin", {"admin": False}) == (200, {})
    assert (await client.get(f"{V2}/users"))[0] == 403

    for bad in ({"admin": "yes"}, {"password": 5}, {"avatar_url": "http://x"},
                {"deactivated": 1}, {"displayname": "x" * 300}):
        status, out = await admin.put(path, bad)
        assert status == 400 and out["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM"), bad
    status, out = await admin.put(f"{V2}/users/{quote('@x:elsewhere.example')}", {})
    assert status == 400


async def test_deactivate_kills_tokens(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    victim = await make_client().register()
    room = (await admin.post("createRoom", {"preset": "public_chat"}))[1]["room_id"]
    assert (await victim.post(f"join/{quote(room)}", {}))[0] == 200
    status, body = await admin.post(f"{V1}/deactivate/{quote(victim.user_id)}", {"erase": True})
    assert (status, body) == (200, {"id_server_unbind_result": "success"})
    status, out = await victim.get("account/whoami")
    assert (status, out["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, user = await admin.get(f"{V2}/users/{quote(victim.user_id)}")
    assert user["deactivated"] is True
    status, members = await admin.get(f"rooms/{quote(room)}/joined_members")
    assert victim.user_id not in members["joined"]
    localpart = victim.user_id[1:].split(":")[0]
    assert (await login(make_client(), localpart, "correct horse battery"))[0] == 403

    # Re-activation needs a password, as with Synapse.
    path = f"{V2}/users/{quote(victim.user_id)}"
    assert (await admin.put(path, {"deactivated": False}))[0] == 400
    status, user = await admin.put(path, {"deactivated": False, "password": "back-again-1"})
    assert (status, user["deactivated"]) == (200, False)
    assert (await login(make_client(), localpart, "back-again-1"))[0] == 200

    # Deactivating through PUT works the same way.
    status, body = await login(make_client(), localpart, "back-again-1")
    victim.access_token = body["access_token"]
    assert (await admin.put(path, {"deactivated": True}))[0] == 200
    assert (await victim.get("account/whoami"))[1]["errcode"] == "M_UNKNOWN_TOKEN"
    assert (await admin.post(f"{V1}/deactivate/{quote('@nobody:' + homeserver.server_name)}",
                             {}))[0] == 404


async def test_reset_password(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    user = await make_client().register()
    localpart = user.user_id[1:].split(":")[0]
    path = f"{V1}/reset_password/{quote(user.user_id)}"
    assert await admin.post(path, {"new_password": "reset-password-1",
                                   "logout_devices": False}) == (200, {})
    assert (await user.get("account/whoami"))[0] == 200  # kept: logout_devices false
    assert (await login(make_client(), localpart, "correct horse battery"))[0] == 403
    assert await admin.post(path, {"new_password": "reset-password-2"}) == (200, {})
    assert (await user.get("account/whoami"))[1]["errcode"] == "M_UNKNOWN_TOKEN"
    assert (await login(make_client(), localpart, "reset-password-2"))[0] == 200
    status, out = await admin.post(path, {})
    assert (status, out["errcode"]) == (400, "M_MISSING_PARAM")
    assert (await admin.post(path, {"new_password": 12}))[0] == 400


async def test_devices_and_whois(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    user = await make_client().register()
    await user.get("sync")
    status, body = await admin.get(f"{V2}/users/{quote(user.user_id)}/devices")
    assert status == 200, body
    assert body["total"] == 1
    device = body["devices"][0]
    assert device["device_id"] == user.device_id and device["user_id"] == user.user_id
    assert {"last_seen_ip", "last_seen_ts", "last_seen_user_agent", "dehydrated"} <= set(device)
    status, whois = await admin.get(f"{V1}/whois/{quote(user.user_id)}")
    assert status == 200 and whois["user_id"] == user.user_id
    assert list(whois["devices"]) == [user.device_id]
    assert "connections" in whois["devices"][user.device_id]["sessions"][0]
    unknown = quote("@nobody:" + homeserver.server_name)
    assert (await admin.get(f"{V2}/users/{unknown}/devices"))[0] == 404

    # One device, and logging devices out: their tokens die.
    path = f"{V2}/users/{quote(user.user_id)}/devices"
    assert (await admin.get(f"{path}/{user.device_id}"))[1] == device
    assert (await admin.get(f"{path}/NOSUCHDEVICE"))[0] == 404
    assert await admin.delete(f"{path}/{user.device_id}") == (200, {})
    assert (await user.get("account/whoami"))[1]["errcode"] == "M_UNKNOWN_TOKEN"
    assert (await admin.get(path))[1]["total"] == 0
    other = make_client()
    localpart = user.user_id[1:].split(":")[0]
    other.access_token = (await login(make_client(), localpart, "correct horse battery"))[1][
        "access_token"]
    ids = [d["device_id"] for d in (await admin.get(path))[1]["devices"]]
    assert await admin.post(f"{V2}/users/{quote(user.user_id)}/delete_devices",
                            {"devices": ids}) == (200, {})
    assert (await other.get("account/whoami"))[1]["errcode"] == "M_UNKNOWN_TOKEN"
    assert (await admin.post(f"{V2}/users/{quote(user.user_id)}/delete_devices",
                             {"devices": "all"}))[0] == 400


async def test_joined_rooms(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    user = await make_client().register()
    rooms = sorted([(await user.post("createRoom", {}))[1]["room_id"] for _ in range(2)])
    status, body = await admin.get(f"{V1}/users/{quote(user.user_id)}/joined_rooms")
    assert (status, body) == (200, {"joined_rooms": rooms, "total": 2})
    await user.post(f"rooms/{quote(rooms[0])}/leave", {})
    status, body = await admin.get(f"{V1}/users/{quote(user.user_id)}/joined_rooms")
    assert body == {"joined_rooms": rooms[1:], "total": 1}
    await assert_admin_only(user, "GET", f"{V1}/users/{quote(user.user_id)}/joined_rooms")

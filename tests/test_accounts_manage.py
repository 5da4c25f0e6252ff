"""Account management against a real server: login details, password change, deactivation,
devices, profiles and capabilities."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

PW = "correct horse battery"


async def login(make_client: Any, user: str, password: str = PW, **extra: Any) -> tuple[int, Any]:
    return await make_client().post("login", {  # type: ignore[no-any-return]
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
        "password": password, **extra}, token=False)


async def test_login_flows_and_login_details(make_client: Any) -> None:
    status, body = await make_client().get("login")
    assert status == 200 and body == {"flows": [{"type": "m.login.password"}]}
    alice = await make_client().register()
    localpart = alice.user_id[1:].split(":")[0]
    status, who = await alice.get("account/whoami")
    assert status == 200 and who == {"user_id": alice.user_id, "device_id": alice.device_id,
                                     "is_guest": False}
    # Uppercase localparts are matched case-insensitively.
    status, body = await login(make_client, localpart.upper(), device_id="MYDEVICE",
                               initial_device_display_name="Laptop")
    assert status == 200 and body["device_id"] == "MYDEVICE" and body["user_id"] == alice.user_id
    assert body["well_known"]["m.homeserver"]["base_url"]
    assert "refresh_token" not in body
    first = body["access_token"]
    status, device = await alice.get("devices/MYDEVICE")
    assert status == 200 and device["display_name"] == "Laptop"
    # Logging in again with the same device ID ends the device's previous session.
    status, body = await login(make_client, alice.user_id, device_id="MYDEVICE")
    assert status == 200 and body["device_id"] == "MYDEVICE"
    assert (await alice.get("account/whoami", token=first))[0] == 401
    status, who = await alice.get("account/whoami", token=body["access_token"])
    assert status == 200 and who["device_id"] == "MYDEVICE"
    # The display name set at first login is kept.
    assert (await alice.get("devices/MYDEVICE"))[1]["display_name"] == "Laptop"
    # Unknown users, users of other servers and bad requests.
    status, err = await login(make_client, "nobody-here")
    assert status == 403 and err["errcode"] == "M_FORBIDDEN"
    status, err = await login(make_client, f"@{localpart}:elsewhere.example")
    assert status == 403 and err["errcode"] == "M_FORBIDDEN"
    client = make_client()
    status, err = await client.post("login", {"type": "m.login.token", "token": "x"}, token=False)
    assert status == 400 and err["errcode"] == "M_UNKNOWN"
    status, err = await client.post("login", {"type": "m.login.password", "user": localpart},
                                    token=False)
    assert status == 400 and err["errcode"] == "M_MISSING_PARAM"
    status, err = await client.post("login", {"type": "m.login.password", "user": localpart,
                                              "password": 5}, token=False)
    assert status == 400 and err["errcode"] == "M_BAD_JSON"
    status, err = await client.post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email",
                                                   "address": "a@b.c"}, "password": "x"},
        token=False)
    assert status == 400 and err["errcode"] == "M_UNKNOWN"


async def test_logout_deletes_the_device(make_client: Any) -> None:
    alice = await make_client().register()
    status, second = await login(make_client, alice.user_id)
    assert status == 200
    assert (await alice.post("logout", {}, token=second["access_token"]))[0] == 200
    status, body = await alice.get("devices")
    assert status == 200
    assert [d["device_id"] for d in body["devices"]] == [alice.device_id]
    status, err = await alice.post("logout", {}, token=second["access_token"])
    assert status == 401 and err["errcode"] == "M_UNKNOWN_TOKEN"
    status, err = await make_client().post("logout", {}, token=False)
    assert status == 401 and err["errcode"] == "M_MISSING_TOKEN"


async def test_password_change_logs_out_other_devices(make_client: Any) -> None:
    alice = await make_client().register()
    status, other = await login(make_client, alice.user_id)
    assert status == 200
    status, challenge = await alice.post("account/password", {"new_password": "new-pass-1"})
    assert status == 401 and challenge["flows"] == [{"stages": ["m.login.password"]}]
    session = challenge["session"]
    status, err = await alice.post("account/password", {"new_password": "new-pass-1", "auth": {
        "type": "m.login.password", "session": session,
        "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": "wrong"}})
    assert status == 401 and err["errcode"] == "M_FORBIDDEN" and err["session"] == session
    status, body = await alice.post("account/password", {"new_password": "new-pass-1", "auth": {
        "type": "m.login.password", "session": session,
        "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": PW}})
    assert status == 200 and body == {}
    assert (await alice.get("account/whoami"))[0] == 200
    assert (await alice.get("account/whoami", token=other["access_token"]))[0] == 401
    devices = (await alice.get("devices"))[1]["devices"]
    assert [d["device_id"] for d in devices] == [alice.device_id]
    assert (await login(make_client, alice.user_id))[0] == 403
    assert (await login(make_client, alice.user_id, "new-pass-1"))[0] == 200
    # logout_devices: false keeps the other sessions.
    status, third = await login(make_client, alice.user_id, "new-pass-1")
    status, body = await alice.post("account/password", {
        "new_password": "new-pass-2", "logout_devices": False, "auth": {
            "type": "m.login.password", "user": alice.user_id, "password": "new-pass-1"}})
    assert status == 200
    assert (await alice.get("account/whoami", token=third["access_token"]))[0] == 200
    # Another user's password does not pass the stage.
    bob = await make_client().register()
    status, err = await alice.post("account/password", {"new_password": "x", "auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob.user_id},
        "password": PW}})
    assert status == 401 and err["errcode"] == "M_FORBIDDEN"
    status, err = await alice.post("account/password", {"new_password": 12})
    assert status == 400 and err["errcode"] == "M_BAD_JSON"


async def test_deactivate_leaves_rooms_and_blocks_login(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    status, room = await alice.post("createRoom", {"preset": "public_chat"})
    assert status == 200
    room_id = room["room_id"]
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    status, challenge = await bob.post("account/deactivate", {})
    assert status == 401 and challenge["flows"] == [{"stages": ["m.login.password"]}]
    status, body = await bob.post("account/deactivate", {"auth": {
        "type": "m.login.password", "session": challenge["session"],
        "identifier": {"type": "m.id.user", "user": bob.user_id}, "password": PW}})
    assert status == 200 and body["id_server_unbind_result"] == "no-support"
    status, err = await bob.get("account/whoami")
    assert status == 401 and err["errcode"] == "M_UNKNOWN_TOKEN"
    # Logging in answers as for an account that never existed: nothing tells a stranger
    # that this one did.
    status, err = await login(make_client, bob.user_id)
    server_name = bob.user_id.split(":", 1)[1]
    status_unknown, err_unknown = await login(make_client, f"@nobody:{server_name}")
    assert (status, err) == (status_unknown, err_unknown) == (403, {
        "errcode": "M_FORBIDDEN", "error": "Invalid username or password"})
    status, member = await alice.get(
        f"rooms/{quote(room_id)}/state/m.room.member/{quote(bob.user_id)}")
    assert status == 200 and member["membership"] == "leave"
    # The user ID can never be registered again.
    localpart = bob.user_id[1:].split(":")[0]
    status, err = await make_client().get("register/available", params={"username": localpart})
    assert status == 400 and err["errcode"] == "M_USER_IN_USE"
    status, err = await alice.get(f"profile/{quote(bob.user_id)}")
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"


async def test_devices_list_rename_delete(make_client: Any) -> None:
    alice = await make_client().register()
    status, second = await login(make_client, alice.user_id, initial_device_display_name="Phone")
    status, third = await login(make_client, alice.user_id)
    status, body = await alice.get("devices")
    assert status == 200
    ids = {d["device_id"] for d in body["devices"]}
    assert ids == {alice.device_id, second["device_id"], third["device_id"]}
    assert all(d.get("last_seen_ts") for d in body["devices"])
    status, device = await alice.get(f"devices/{second['device_id']}")
    assert status == 200 and device["display_name"] == "Phone"
    assert (await alice.put(f"devices/{second['device_id']}", {"display_name": "Tablet"}))[0] == 200
    assert (await alice.get(f"devices/{second['device_id']}"))[1]["display_name"] == "Tablet"
    status, err = await alice.put("devices/NOSUCHDEVICE", {"display_name": "x"})
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"
    status, err = await alice.put(f"devices/{second['device_id']}", {"display_name": 3})
    assert status == 400 and err["errcode"] == "M_BAD_JSON"
    assert (await alice.get("devices/NOSUCHDEVICE"))[0] == 404
    # Another user cannot see or delete alice's devices.
    bob = await make_client().register()
    assert (await bob.get(f"devices/{second['device_id']}"))[0] == 404
    # DELETE /devices/{id}: UIA first, then the device and its tokens are gone.
    status, challenge = await alice.delete(f"devices/{second['device_id']}")
    assert status == 401 and challenge["flows"] == [{"stages": ["m.login.password"]}]
    status, err = await alice.delete(f"devices/{second['device_id']}", {"auth": {
        "type": "m.login.password", "session": challenge["session"],
        "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": "nope"}})
    assert status == 401 and err["errcode"] == "M_FORBIDDEN"
    status, _ = await alice.delete(f"devices/{second['device_id']}", {"auth": {
        "type": "m.login.password", "session": challenge["session"],
        "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": PW}})
    assert status == 200
    assert (await alice.get("account/whoami", token=second["access_token"]))[0] == 401
    assert (await alice.get(f"devices/{second['device_id']}"))[0] == 404
    # A UIA session is bound to its request: it cannot authorise deleting another device.
    status, challenge = await alice.delete(f"devices/{third['device_id']}")
    status, err = await alice.post("delete_devices", {"devices": [third["device_id"]], "auth": {
        "type": "m.login.password", "session": challenge["session"],
        "user": alice.user_id, "password": PW}})
    assert status == 403 and err["errcode"] == "M_FORBIDDEN"
    # POST /delete_devices.
    status, challenge = await alice.post("delete_devices", {"devices": [third["device_id"]]})
    assert status == 401
    status, _ = await alice.post("delete_devices", {"devices": [third["device_id"], "UNKNOWN"],
                                                    "auth": {
        "type": "m.login.password", "session": challenge["session"],
        "user": alice.user_id, "password": PW}})
    assert status == 200
    assert (await alice.get("account/whoami", token=third["access_token"]))[0] == 401
    body = (await alice.get("devices"))[1]
    assert [d["device_id"] for d in body["devices"]] == [alice.device_id]
    status, err = await alice.post("delete_devices", {"devices": "all"})
    assert status == 400 and err["errcode"] == "M_BAD_JSON"


async def test_profile_get_set(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    me = quote(alice.user_id)
    # A new account is named by its localpart, as in Synapse; it has no avatar.
    status, body = await bob.get(f"profile/{me}")
    assert status == 200 and body == {"displayname": alice.user_id[1:].split(":")[0]}
    assert (await bob.get(f"profile/{me}/avatar_url"))[0] == 404
    assert (await alice.put(f"profile/{me}/displayname", {"displayname": "Alice"}))[0] == 200
    assert (await alice.put(f"profile/{me}/avatar_url", {"avatar_url": "mxc://x.y/abc"}))[0] == 200
    status, body = await bob.get(f"profile/{me}")
    assert status == 200 and body == {"displayname": "Alice", "avatar_url": "mxc://x.y/abc"}
    status, body = await make_client().get(f"profile/{me}/displayname")
    assert status == 200 and body == {"displayname": "Alice"}
    status, body = await bob.get(f"profile/{me}/avatar_url")
    assert status == 200 and body == {"avatar_url": "mxc://x.y/abc"}
    # Only your own profile; well-formed values only.
    status, err = await bob.put(f"profile/{me}/displayname", {"displayname": "Mallory"})
    assert status == 403 and err["errcode"] == "M_FORBIDDEN"
    status, err = await alice.put(f"profile/{me}/displayname", {"displayname": 7})
    assert status == 400 and err["errcode"] == "M_BAD_JSON"
    status, err = await alice.put(f"profile/{me}/displayname", {})
    assert status == 400 and err["errcode"] == "M_MISSING_PARAM"
    status, err = await alice.put(f"profile/{me}/avatar_url", {"avatar_url": "https://x/y.png"})
    assert status == 400 and err["errcode"] == "M_INVALID_PARAM"
    status, err = await make_client().put(f"profile/{me}/displayname", {"displayname": "x"})
    assert status == 401 and err["errcode"] == "M_MISSING_TOKEN"
    status, err = await bob.get(f"profile/{quote('@nobody:nowhere.example')}")
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"
    # An empty string clears the field.
    assert (await alice.put(f"profile/{me}/avatar_url", {"avatar_url": ""}))[0] == 200
    assert (await bob.get(f"profile/{me}"))[1] == {"displayname": "Alice"}


async def test_profile_change_updates_member_events(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    status, room = await alice.post("createRoom", {"preset": "public_chat", "name": "R"})
    room_id = quote(room["room_id"])
    assert (await bob.post(f"join/{room_id}", {}))[0] == 200
    me = quote(alice.user_id)
    assert (await alice.put(f"profile/{me}/avatar_url", {"avatar_url": "mxc://x.y/a"}))[0] == 200
    assert (await alice.put(f"profile/{me}/displayname", {"displayname": "Alice Two"}))[0] == 200
    status, member = await bob.get(f"rooms/{room_id}/state/m.room.member/{me}")
    assert status == 200
    assert member == {"membership": "join", "displayname": "Alice Two", "avatar_url": "mxc://x.y/a"}
    # Setting the same value again sends no new event.
    status, before = await bob.get(f"rooms/{room_id}/messages", params={"dir": "b", "limit": "50"})
    assert (await alice.put(f"profile/{me}/displayname", {"displayname": "Alice Two"}))[0] == 200
    status, after = await bob.get(f"rooms/{room_id}/messages", params={"dir": "b", "limit": "50"})
    assert len(after["chunk"]) == len(before["chunk"])


async def test_capabilities(make_client: Any) -> None:
    alice = await make_client().register()
    status, body = await alice.get("capabilities")
    assert status == 200
    caps = body["capabilities"]
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.room_versions"]["default"] == "12"
    assert caps["m.room_versions"]["available"] == {"10": "stable", "11": "stable", "12": "stable"}
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}
    assert caps["m.3pid_changes"] == {"enabled": False}
    assert caps["m.get_login_token"] == {"enabled": False}
    assert (await make_client().get("capabilities"))[0] == 401

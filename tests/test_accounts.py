"""Registration, login, logout, refresh and token storage, against a real server."""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import sys
from typing import Any

from tests.conftest import ServerProcess


async def test_register_uia_flow_and_whoami(make_client: Any) -> None:
    client = make_client()
    localpart = f"flow{secrets.token_hex(4)}"
    status, body = await client.post("register", {"username": localpart, "password": "pw12345678"},
                                     token=False)
    assert status == 401 and body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert "errcode" not in body and body["session"]
    status, body = await client.post("register", {
        "username": localpart, "password": "pw12345678",
        "auth": {"type": "m.login.dummy", "session": body["session"]},
    }, token=False)
    assert status == 200 and body["user_id"].startswith(f"@{localpart}:")
    client.access_token = body["access_token"]
    status, who = await client.get("account/whoami")
    assert status == 200 and who["user_id"] == body["user_id"] and who["device_id"] == body["device_id"]
    status, body = await make_client().post("register", {
        "username": localpart, "password": "x", "auth": {"type": "m.login.dummy"}}, token=False)
    assert status == 400 and body["errcode"] == "M_USER_IN_USE"
    status, body = await make_client().get("register/available", params={"username": localpart})
    assert status == 400 and body["errcode"] == "M_USER_IN_USE"
    status, body = await make_client().get("register/available", params={"username": "Bad Name!"})
    assert status == 400 and body["errcode"] == "M_INVALID_USERNAME"


async def test_login_logout_and_wrong_password(make_client: Any) -> None:
    alice = await make_client().register(password="s3cret-pass")
    localpart = alice.user_id[1:].split(":")[0]
    for identifier in (localpart, alice.user_id):
        status, body = await make_client().post("login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": identifier},
            "password": "s3cret-pass",
        }, token=False)
        assert status == 200 and body["user_id"] == alice.user_id, body
    status, body = await make_client().post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
        "password": "wrong",
    }, token=False)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    assert (await alice.post("logout", {}))[0] == 200
    status, body = await alice.get("account/whoami")
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"


async def test_logout_all_ends_every_session(make_client: Any) -> None:
    alice = await make_client().register(password="pw-all-devices")
    status, second = await make_client().post("login", {
        "type": "m.login.password", "user": alice.user_id, "password": "pw-all-devices"}, token=False)
    assert status == 200
    assert (await alice.post("logout/all", {}))[0] == 200
    for token in (alice.access_token, second["access_token"]):
        assert (await alice.get("account/whoami", token=token))[0] == 401


async def test_refresh_token_rotation(make_client: Any) -> None:
    alice = await make_client().register(password="pw-refresh-1")
    status, body = await make_client().post("login", {
        "type": "m.login.password", "user": alice.user_id, "password": "pw-refresh-1",
        "refresh_token": True}, token=False)
    assert status == 200 and body["refresh_token"]
    status, new = await make_client().post("refresh", {"refresh_token": body["refresh_token"]},
                                           token=False)
    assert status == 200 and new["access_token"] != body["access_token"]
    assert new["refresh_token"] != body["refresh_token"]
    assert (await alice.get("account/whoami", token=body["access_token"]))[0] == 401
    # A client that lost the response may repeat the refresh with the old token...
    status, retry = await make_client().post("refresh", {"refresh_token": body["refresh_token"]},
                                             token=False)
    assert status == 200
    # ...which replaces the unused tokens it got the first time.
    assert (await alice.get("account/whoami", token=new["access_token"]))[0] == 401
    status, who = await alice.get("account/whoami", token=retry["access_token"])
    assert status == 200 and who["device_id"] == body["device_id"]
    # Once the new refresh token is used, the old one is revoked.
    status, third = await make_client().post("refresh", {"refresh_token": retry["refresh_token"]},
                                             token=False)
    assert status == 200
    status, err = await make_client().post("refresh", {"refresh_token": body["refresh_token"]},
                                           token=False)
    assert status == 401 and err["errcode"] == "M_UNKNOWN_TOKEN" and err["soft_logout"] is False
    assert (await alice.get("account/whoami", token=third["access_token"]))[0] == 200
    # Using the newest refresh token revokes the one before it as well.
    assert (await make_client().post("refresh", {"refresh_token": third["refresh_token"]},
                                     token=False))[0] == 200
    status, err = await make_client().post("refresh", {"refresh_token": retry["refresh_token"]},
                                           token=False)
    assert status == 401 and err["errcode"] == "M_UNKNOWN_TOKEN"
    status, err = await make_client().post("refresh", {"refresh_token": "nope"}, token=False)
    assert status == 401 and err["errcode"] == "M_UNKNOWN_TOKEN"


async def test_using_the_new_access_token_ends_the_old_refresh_token(make_client: Any) -> None:
    alice = await make_client().register(password="pw-refresh-2")
    status, body = await make_client().post("login", {
        "type": "m.login.password", "user": alice.user_id, "password": "pw-refresh-2",
        "refresh_token": True}, token=False)
    assert status == 200
    status, new = await make_client().post("refresh", {"refresh_token": body["refresh_token"]},
                                           token=False)
    assert status == 200
    # until the new access token is used, the old refresh token still works (lost response)
    status, retry = await make_client().post("refresh", {"refresh_token": body["refresh_token"]},
                                             token=False)
    assert status == 200
    assert (await alice.get("account/whoami", token=retry["access_token"]))[0] == 200
    status, err = await make_client().post("refresh", {"refresh_token": body["refresh_token"]},
                                           token=False)
    assert status == 401 and err["errcode"] == "M_UNKNOWN_TOKEN"
    assert (await alice.get("account/whoami", token=retry["access_token"]))[0] == 200


async def test_tokens_are_stored_hashed_and_never_logged(homeserver: ServerProcess, make_client: Any) -> None:
    alice = await make_client().register()
    assert (await alice.get("account/whoami"))[0] == 200
    assert alice.access_token not in homeserver.log()
    if homeserver.backend == "sqlite":
        conn = sqlite3.connect(homeserver.db_url[len("sqlite:///"):])
        dump = "\n".join(conn.iterdump())
        conn.close()
        assert alice.access_token not in dump


async def test_register_user_cli_on_running_server(homeserver: ServerProcess, make_client: Any) -> None:
    localpart = f"cli{secrets.token_hex(4)}"
    proc = subprocess.run(
        [sys.executable, "-m", "veche", "register-user", localpart, "--password", "cli-password"],
        env=homeserver.env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    status, body = await make_client().post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
        "password": "cli-password"}, token=False)
    assert status == 200, body


async def test_profile_change_reaches_rooms(make_client: Any) -> None:
    alice = await make_client().register()
    status, room = await alice.post("createRoom", {"preset": "private_chat"})
    assert status == 200
    assert (await alice.put(f"profile/{alice.user_id}/displayname", {"displayname": "Alice A."}))[0] == 200
    status, body = await alice.get(f"profile/{alice.user_id}")
    assert status == 200 and body["displayname"] == "Alice A."
    status, member = await alice.get(f"rooms/{room['room_id']}/state/m.room.member/{alice.user_id}")
    assert status == 200 and member["displayname"] == "Alice A."

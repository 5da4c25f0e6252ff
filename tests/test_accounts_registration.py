"""Registration: the dummy flow's details, token-only registration, closed registration and
rate limits, each on a server of its own configuration (same database backend)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.conftest import Client, ServerProcess

V1_VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


def cli(srv: ServerProcess, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "veche", *args], env=srv.env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


async def test_register_details(make_client: Any) -> None:
    client = make_client()
    # Without a username one is generated; inhibit_login gives no session.
    status, challenge = await client.post("register", {"password": "pw-generated"}, token=False)
    assert status == 401 and "errcode" not in challenge and "completed" not in challenge
    status, body = await client.post("register", {
        "password": "pw-generated", "inhibit_login": True,
        "auth": {"type": "m.login.dummy", "session": challenge["session"]}}, token=False)
    assert status == 200 and body["user_id"].startswith("@")
    assert "access_token" not in body and "device_id" not in body
    # The session is used up once the registration succeeded.
    status, err = await client.post("register", {
        "password": "pw", "auth": {"type": "m.login.dummy", "session": challenge["session"]}},
        token=False)
    assert status == 400 and err["errcode"] == "M_UNKNOWN"
    # device_id, initial_device_display_name and refresh_token.
    localpart = f"Reg{secrets.token_hex(4)}"
    status, body = await client.post("register", {
        "username": localpart, "password": "pw-device", "device_id": "REGDEVICE",
        "initial_device_display_name": "Registering phone", "refresh_token": True,
        "auth": {"type": "m.login.dummy"}}, token=False)
    if status == 401:
        status, body = await client.post("register", {
            "username": localpart, "password": "pw-device", "device_id": "REGDEVICE",
            "initial_device_display_name": "Registering phone", "refresh_token": True,
            "auth": {"type": "m.login.dummy", "session": body["session"]}}, token=False)
    assert status == 200, body
    assert body["user_id"].startswith(f"@{localpart.lower()}:")
    assert body["device_id"] == "REGDEVICE" and body["refresh_token"]
    status, device = await client.get("devices/REGDEVICE", token=body["access_token"])
    assert status == 200 and device["display_name"] == "Registering phone"
    # Bad requests.
    status, err = await client.post("register", {"password": "x"}, token=False,
                                    params={"kind": "guest"})
    assert status == 403 and err["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    status, err = await client.post("register", {"password": "x"}, token=False,
                                    params={"kind": "robot"})
    assert status == 400
    status, err = await client.post("register", {"username": "bad name", "password": "x"},
                                    token=False)
    assert status == 400 and err["errcode"] == "M_INVALID_USERNAME"
    status, err = await client.post("register", {"username": 5, "password": "x"}, token=False)
    assert status == 400 and err["errcode"] == "M_BAD_JSON"
    # An empty body asks for the flows, as Element's first call does; the password is missing
    # only once the client goes through them without it.
    status, err = await client.post("register", {}, token=False)
    assert status == 401 and err["flows"] and err["session"]
    status, err = await client.post("register", {"username": "nopassword1"}, token=False)
    assert status == 401 and err["flows"]
    status, err = await client.post("register", {
        "username": "nopassword1", "auth": {"type": "m.login.dummy", "session": err["session"]}},
        token=False)
    assert status == 400 and err["errcode"] == "M_MISSING_PARAM"
    status, err = await client.post("register", {"password": "x", "auth": "dummy"}, token=False)
    assert status == 400 and err["errcode"] == "M_BAD_JSON"
    status, err = await client.post("register", {
        "password": "x", "auth": {"type": "m.login.dummy", "session": "no-such-session"}},
        token=False)
    assert status == 400
    # A stage that is not offered does not count.
    status, err = await client.post("register", {
        "password": "x", "auth": {"type": "m.login.registration_token", "token": "t"}},
        token=False)
    assert status == 401 and err["errcode"] and "completed" not in err
    status, body = await client.get("register/available", params={"username": "freename" +
                                                                  secrets.token_hex(3)})
    assert status == 200 and body == {"available": True}
    status, err = await client.get("register/available")
    assert status == 400 and err["errcode"] == "M_MISSING_PARAM"


async def test_token_registration(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server({"VECHE_REGISTRATION__ENABLED": "true",
                       "VECHE_REGISTRATION__REQUIRE_TOKEN": "true",
                       "VECHE_RATE_LIMITS__REGISTRATION": '{"per_second": 100, "burst": 100}'})
    token = cli(srv, "create-registration-token", "--uses", "1")
    assert token
    # a token outside the spec's alphabet is refused with a message, not a traceback
    bad = subprocess.run([sys.executable, "-m", "veche", "create-registration-token", "--token",
                          "no spaces allowed"], env=srv.env, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "A-Z, a-z, 0-9" in bad.stderr and "Traceback" not in bad.stderr
    async with aiohttp.ClientSession() as http:
        client = Client(http, srv.base_url)
        status, body = await client.get(V1_VALIDITY, params={"token": token})
        assert status == 200 and body == {"valid": True}
        status, body = await client.get(V1_VALIDITY, params={"token": "not-a-token"})
        assert status == 200 and body == {"valid": False}
        status, challenge = await client.post("register", {"username": "tokenuser",
                                                           "password": "pw-token"}, token=False)
        assert status == 401
        assert challenge["flows"] == [{"stages": ["m.login.registration_token"]}]
        session = challenge["session"]
        # The dummy stage is not offered here.
        status, err = await client.post("register", {
            "username": "tokenuser", "password": "pw-token",
            "auth": {"type": "m.login.dummy", "session": session}}, token=False)
        assert status == 401 and "completed" not in err
        status, err = await client.post("register", {
            "username": "tokenuser", "password": "pw-token",
            "auth": {"type": "m.login.registration_token", "token": "wrong", "session": session}},
            token=False)
        assert status == 401 and err["errcode"] == "M_FORBIDDEN" and err["session"] == session
        # Checking a token does not use it up.
        assert (await client.get(V1_VALIDITY, params={"token": token}))[1] == {"valid": True}
        status, body = await client.post("register", {
            "username": "tokenuser", "password": "pw-token",
            "auth": {"type": "m.login.registration_token", "token": token, "session": session}},
            token=False)
        assert status == 200 and body["user_id"] == f"@tokenuser:{srv.server_name}"
        # The single use is spent.
        assert (await client.get(V1_VALIDITY, params={"token": token}))[1] == {"valid": False}
        status, challenge = await client.post("register", {"username": "tokenuser2",
                                                           "password": "pw-token"}, token=False)
        status, err = await client.post("register", {
            "username": "tokenuser2", "password": "pw-token",
            "auth": {"type": "m.login.registration_token", "token": token,
                     "session": challenge["session"]}}, token=False)
        assert status == 401 and err["errcode"] == "M_FORBIDDEN"


async def test_closed_registration_and_rate_limits(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server({})
    localpart = f"admin{secrets.token_hex(3)}"
    assert cli(srv, "register-user", localpart, "--password", "admin-pass", "--admin")
    async with aiohttp.ClientSession() as http:
        client = Client(http, srv.base_url)
        status, err = await client.post("register", {"username": "someone", "password": "pw",
                                                     "auth": {"type": "m.login.dummy"}},
                                        token=False)
        assert status == 403 and err["errcode"] == "M_FORBIDDEN"
        status, err = await client.get(V1_VALIDITY, params={"token": "abc"})
        assert status == 403 and err["errcode"] == "M_FORBIDDEN"
        status, body = await client.post("login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
            "password": "admin-pass"}, token=False)
        assert status == 200 and body["user_id"] == f"@{localpart}:{srv.server_name}"
        # Login attempts are rate limited (burst 5 by default).
        statuses = []
        for _ in range(7):
            status, err = await client.post("login", {
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
                "password": "wrong"}, token=False)
            statuses.append(status)
        assert 403 in statuses and statuses[-1] == 429, statuses
        assert err["errcode"] == "M_LIMIT_EXCEEDED" and err["retry_after_ms"] > 0

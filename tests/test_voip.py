"""TURN credentials for calls: coturn's shared-secret scheme, fixed credentials, or none."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import pytest

from tests.conftest import TURN_SECRET, Client


async def test_shared_secret_credentials(make_client: Any) -> None:
    alice = await make_client().register()
    status, body = await alice.get("voip/turnServer")
    assert status == 200, body
    assert body["uris"] == ["turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349"]
    assert body["ttl"] == 86400
    expiry, user_id = body["username"].split(":", 1)
    assert user_id == alice.user_id
    assert abs(int(expiry) - (time.time() + 86400)) < 60
    # What coturn (use-auth-secret) computes to check the password.
    mac = hmac.new(TURN_SECRET.encode(), body["username"].encode(), hashlib.sha1).digest()
    assert body["password"] == base64.b64encode(mac).decode()
    assert (await make_client().get("voip/turnServer", token=False))[0] == 401


async def test_fixed_credentials_or_none(make_server: Any, http: Any) -> None:
    fixed = make_server({"VECHE_TURN__URIS": '["turn:10.0.0.1"]', "VECHE_TURN__USERNAME": "u",
                         "VECHE_TURN__PASSWORD": "p", "VECHE_TURN__USER_LIFETIME_S": "600"},
                        dev=True)
    alice = await Client(http, fixed.base_url).register()
    assert await alice.get("voip/turnServer") == (
        200, {"username": "u", "password": "p", "uris": ["turn:10.0.0.1"], "ttl": 600})
    bare = make_server({}, dev=True)
    bob = await Client(http, bare.base_url).register()
    status, body = await bob.get("voip/turnServer")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


def test_bad_turn_uri_is_a_config_error() -> None:
    from veche.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="turn.uris"):
        load_config(environ={"VECHE_TURN__URIS": '["stun:example.org"]'})

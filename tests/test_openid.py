"""OpenID: a user gets a token that a third party (a widget, an integration manager) can
exchange at /openid/userinfo for the user's ID and nothing else; it is no access token."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from veche.services.auth import hash_token


async def test_openid_token_proves_identity_only(make_client: Any, homeserver: Any, http: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    status, token = await alice.post(f"user/{quote(alice.user_id)}/openid/request_token", {})
    assert status == 200, token
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    assert token["matrix_server_name"] == homeserver.server_name
    userinfo = f"{homeserver.base_url}/_matrix/federation/v1/openid/userinfo"
    async with http.get(userinfo, params={"access_token": token["access_token"]}) as resp:
        assert resp.status == 200 and await resp.json() == {"sub": alice.user_id}
    async with http.get(userinfo, params={"access_token": alice.access_token}) as resp:
        assert resp.status == 401 and (await resp.json())["errcode"] == "M_UNKNOWN_TOKEN"
    # The OpenID token opens nothing else.
    other = make_client()
    other.access_token = token["access_token"]
    assert (await other.get("account/whoami"))[0] == 401
    status, body = await bob.post(f"user/{quote(alice.user_id)}/openid/request_token", {})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # Only a hash is stored.
    if homeserver.backend == "sqlite":
        db = Path(homeserver.db_url.removeprefix("sqlite:///"))
        stored = b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())
        assert hash_token(token["access_token"]).encode() in stored
        assert token["access_token"].encode() not in stored

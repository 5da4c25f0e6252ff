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


async def test_openid_tokens_end_with_their_session(make_client: Any, homeserver: Any, http: Any) -> None:
    from tests.test_accounts_manage import PW, login

    userinfo = f"{homeserver.base_url}/_matrix/federation/v1/openid/userinfo"

    async def openid(access_token: str, user_id: str) -> str:
        client = make_client()
        client.access_token = access_token
        status, body = await client.post(f"user/{quote(user_id)}/openid/request_token", {})
        assert status == 200, body
        return str(body["access_token"])

    async def valid(token: str) -> bool:
        async with http.get(userinfo, params={"access_token": token}) as resp:
            assert resp.status in (200, 401)
            return resp.status == 200

    def uia(user_id: str, session: str | None = None) -> dict[str, Any]:
        return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
                "password": PW, **({"session": session} if session else {})}

    alice = await make_client().register()
    sessions = [(await login(make_client, alice.user_id))[1] for _ in range(4)]
    tokens = [await openid(s["access_token"], alice.user_id) for s in sessions]
    kept = await openid(alice.access_token, alice.user_id)
    assert all([await valid(t) for t in [*tokens, kept]])

    # Logout ends the OpenID tokens of that session, and of no other.
    assert (await alice.post("logout", {}, token=sessions[0]["access_token"]))[0] == 200
    assert not await valid(tokens[0]) and await valid(tokens[1])
    # Deleting a device ends those made on it.
    status, challenge = await alice.delete(f"devices/{sessions[1]['device_id']}")
    status, _ = await alice.delete(f"devices/{sessions[1]['device_id']}",
                                   {"auth": uia(alice.user_id, challenge["session"])})
    assert status == 200 and not await valid(tokens[1]) and await valid(tokens[2])
    # A password change logs the other sessions out, their OpenID tokens too.
    status, _ = await alice.post("account/password", {"new_password": PW, "auth": uia(alice.user_id)})
    assert status == 200
    assert not await valid(tokens[2]) and not await valid(tokens[3]) and await valid(kept)
    # logout/all ends every one.
    assert (await alice.post("logout/all", {}))[0] == 200
    assert not await valid(kept)

    # Deactivation too.
    bob = await make_client().register()
    bob_token = await openid(bob.access_token, bob.user_id)
    status, challenge = await bob.post("account/deactivate", {})
    status, _ = await bob.post("account/deactivate", {"auth": uia(bob.user_id, challenge["session"])})
    assert status == 200 and not await valid(bob_token)

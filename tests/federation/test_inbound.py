"""Incoming federation requests are checked: X-Matrix parsed per the spec's grammar, the
origin's key fetched over TLS and kept, the signature verified over the raw request target,
and the destination must be us. The test plays the origin server: a loopback HTTPS server
publishing its keys."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from yarl import URL

from tests.conftest import Client, ServerProcess
from tests.federation.https_servers import RecordingServer
from tests.federation.pki import TestCA
from veche.core.federation_auth import XMatrix, build_x_matrix, parse_x_matrix, sign_request
from veche.core.server_keys import own_keys_response

KEY = generate_signing_key("t1")
OTHER_KEY = generate_signing_key("t1")
OLD_KEY = generate_signing_key("old1")


class Origin:
    """A fake origin server: its keys at https://localhost:<port>/_matrix/key/v2/server."""

    def __init__(self, server: RecordingServer) -> None:
        self.server = server
        self.name = f"localhost:{server.port}"
        now = int(time.time() * 1000)
        # An old key that (oddly) claims to expire later: old keys never sign requests.
        old = {"ed25519:old1": {"key": encode_verify_key_base64(get_verify_key(OLD_KEY)),
                                "expired_ts": now + 3600_000}}
        body = own_keys_response(self.name, KEY, old, now + 3600_000)
        server.responses["/_matrix/key/v2/server"] = (200, body, {})

    def key_fetches(self) -> int:
        return sum(1 for s in self.server.seen if s.path.startswith("/_matrix/key/v2/server"))


@pytest.fixture
async def origin(test_ca: TestCA) -> AsyncIterator[Origin]:
    server = await RecordingServer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    yield Origin(server)
    await server.close()


async def _get(http: aiohttp.ClientSession, veche: ServerProcess, target: str,
               authorization: str | None) -> tuple[int, Any]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    # Sent exactly as signed: yarl would otherwise normalise %40 to @ in the query.
    async with http.get(URL(veche.base_url + target, encoded=True), headers=headers) as r:
        return r.status, await r.json()


def _drop(header: str, name: str) -> str:
    auth = parse_x_matrix(header)
    params = [p for p in header.split(" ", 1)[1].split(",") if not p.startswith(name + "=")]
    assert len(params) == 3, auth
    return "X-Matrix " + ",".join(params)


async def test_signed_requests_are_checked(veche: ServerProcess, origin: Origin,
                                           http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    await alice.put(f"profile/{alice.user_id}/displayname", {"displayname": "Alice"})
    me = veche.server_name
    raw = f"/_matrix/federation/v1/query/profile?user_id={quote(alice.user_id or '', safe='')}"
    decoded = f"/_matrix/federation/v1/query/profile?user_id={alice.user_id}"
    good = sign_request(KEY, origin.name, me, "GET", raw)
    parsed = parse_x_matrix(good)
    cases: list[tuple[str, str | None, int, str | None]] = [
        ("good", good, 200, None),
        # Older servers leave destination out of the header (the signed JSON names us).
        ("no destination parameter", good.replace(f'destination="{me}",', ""), 200, None),
        ("signed with an old key", sign_request(OLD_KEY, origin.name, me, "GET", raw), 401,
         "M_UNAUTHORIZED"),
        ("another key's signature", sign_request(OTHER_KEY, origin.name, me, "GET", raw), 401,
         "M_UNAUTHORIZED"),
        ("wrong destination", sign_request(KEY, origin.name, "localhost:1", "GET", raw), 401,
         "M_UNAUTHORIZED"),
        ("signed for the decoded target", sign_request(KEY, origin.name, me, "GET", decoded), 401,
         "M_UNAUTHORIZED"),
        ("signed as another method", sign_request(KEY, origin.name, me, "PUT", raw), 401,
         "M_UNAUTHORIZED"),
        ("missing origin", _drop(good, "origin"), 401, "M_UNAUTHORIZED"),
        ("missing key", _drop(good, "key"), 401, "M_UNAUTHORIZED"),
        ("missing sig", _drop(good, "sig"), 401, "M_UNAUTHORIZED"),
        ("no header", None, 401, "M_UNAUTHORIZED"),
        ("a bearer token", "Bearer abc", 401, "M_UNAUTHORIZED"),
        ("claims to be us", sign_request(KEY, me, me, "GET", raw), 401, "M_UNAUTHORIZED"),
        ("unknown key ID", build_x_matrix(XMatrix(origin.name, "ed25519:nope", parsed.sig, me)),
         401, "M_UNAUTHORIZED"),
        ("bad origin name", build_x_matrix(XMatrix("not a name", parsed.key, parsed.sig, me)),
         401, "M_UNAUTHORIZED"),
    ]
    for what, header, status, errcode in cases:
        got_status, body = await _get(http, veche, raw, header)
        assert got_status == status, (what, body)
        if errcode:
            assert body["errcode"] == errcode, (what, body)
        else:
            assert body == {"displayname": "Alice"}, (what, body)
    # Keys were fetched once and kept (in the database), even though requests named an
    # unknown key ID: a refetch waits a minute, so forged requests cannot make us hammer.
    assert origin.key_fetches() == 1


async def test_profile_query_answers(veche: ServerProcess, origin: Origin,
                                     http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    await alice.put(f"profile/{alice.user_id}/displayname", {"displayname": "Alice"})
    me = veche.server_name

    async def query(params: str) -> tuple[int, Any]:
        target = f"/_matrix/federation/v1/query/profile?{params}"
        return await _get(http, veche, target, sign_request(KEY, origin.name, me, "GET", target))

    user = quote(alice.user_id or "", safe="")
    assert await query(f"user_id={user}&field=displayname") == (200, {"displayname": "Alice"})
    assert await query(f"user_id={user}&field=avatar_url") == (200, {})
    assert (await query(f"user_id={quote('@nobody:' + me, safe='')}"))[0] == 404
    assert (await query(f"user_id={quote('@x:elsewhere.test', safe='')}"))[0] == 400
    assert (await query("field=displayname"))[0] == 400
    # Unknown federation routes: 404 M_UNRECOGNIZED, signed or not.
    target = "/_matrix/federation/v1/no/such/route"
    status, body = await _get(http, veche, target, sign_request(KEY, origin.name, me, "GET", target))
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")
    status, body = await _get(http, veche, "/_matrix/federation/v1/version", None)
    assert status == 200 and body["server"]["name"] == "Veche"

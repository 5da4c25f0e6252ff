"""Key exchange: /_matrix/key/v2/server is self-signed and keeps old keys after a rotation
with `veche rotate-signing-key`; /_matrix/key/v2/query answers as a notary for our keys and
for other servers' (cached, countersigned), and a server fetches keys through its configured
notary when the server itself is down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import aiohttp
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from tests.conftest import ServerProcess
from tests.federation.peers import start_federating_veche, wait_for_port
from tests.federation.pki import TestCA
from veche.core.server_keys import parse_keys_response


def keys_of(response: dict[str, Any], field: str = "verify_keys") -> dict[str, Any]:
    return {k: decode_verify_key_bytes(k, decode_base64(v["key"])) for k, v in response[field].items()}


async def get(http: aiohttp.ClientSession, server: ServerProcess, path: str) -> tuple[int, Any]:
    async with http.get(server.base_url + path) as r:
        return r.status, await r.json()


async def query(http: aiohttp.ClientSession, server: ServerProcess, body: Any) -> tuple[int, Any]:
    async with http.post(server.base_url + "/_matrix/key/v2/query", json=body) as r:
        return r.status, await r.json()


async def test_server_keys_are_self_signed(homeserver: ServerProcess,
                                           http: aiohttp.ClientSession) -> None:
    now = int(time.time() * 1000)
    status, body = await get(http, homeserver, "/_matrix/key/v2/server")
    assert status == 200
    assert set(body) == {"server_name", "verify_keys", "old_verify_keys", "valid_until_ts",
                         "signatures"}
    assert body["server_name"] == homeserver.server_name
    # Valid long enough that nobody refetches soon (spec: not less than an hour ahead).
    assert now + 3600_000 < body["valid_until_ts"] <= now + 7 * 24 * 3600_000
    [(key_id, key)] = keys_of(body).items()
    verify_signed_json(body, homeserver.server_name, key)
    parse_keys_response(body, homeserver.server_name, now)
    # The deprecated form with a key ID answers the same.
    status, again = await get(http, homeserver, f"/_matrix/key/v2/server/{key_id}")
    assert status == 200 and again["verify_keys"] == body["verify_keys"]
    # As a notary for itself: its own response, in both query forms.
    status, answer = await query(http, homeserver, {"server_keys": {homeserver.server_name: {}}})
    assert status == 200 and answer["server_keys"][0]["verify_keys"] == body["verify_keys"]
    status, answer = await get(http, homeserver, f"/_matrix/key/v2/query/{homeserver.server_name}")
    assert status == 200 and answer["server_keys"][0]["verify_keys"] == body["verify_keys"]
    # Nothing asked, nothing answered; malformed queries are refused.
    assert await query(http, homeserver, {"server_keys": {}}) == (200, {"server_keys": []})
    assert (await query(http, homeserver, {"server_keys": []}))[0] == 400
    assert (await query(http, homeserver, {"server_keys": {"a.test": []}}))[0] == 400
    assert (await query(http, homeserver, {}))[0] == 400


async def test_rotation_keeps_the_old_key_published(make_server: Any,
                                                    http: aiohttp.ClientSession) -> None:
    server = make_server({}, dev=True)
    _, before = await get(http, server, "/_matrix/key/v2/server")
    [old_id] = before["verify_keys"]
    server.stop()
    start = int(time.time() * 1000)
    out = subprocess.run([sys.executable, "-m", "veche", "rotate-signing-key"], env=server.env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert old_id in out.stdout and "restart" in out.stdout
    server.start()
    _, after = await get(http, server, "/_matrix/key/v2/server")
    [new_id] = after["verify_keys"]
    assert new_id != old_id
    assert after["old_verify_keys"][old_id]["key"] == before["verify_keys"][old_id]["key"]
    assert start <= after["old_verify_keys"][old_id]["expired_ts"] <= int(time.time() * 1000)
    verify_signed_json(after, server.server_name, keys_of(after)[new_id])
    assert old_id not in after["signatures"][server.server_name]
    parsed = parse_keys_response(after, server.server_name, start)
    assert set(parsed.old_verify_keys) == {old_id}


async def test_notary_serves_cached_keys_and_is_used_when_a_server_is_down(
        make_server: Any, test_ca: TestCA, http: aiohttp.ClientSession) -> None:
    notary = start_federating_veche(make_server, test_ca)
    origin = start_federating_veche(make_server, test_ca)
    _, notary_keys = await get(http, notary, "/_matrix/key/v2/server")
    _, origin_keys = await get(http, origin, "/_matrix/key/v2/server")
    # The notary fetches the origin's keys, and answers with them countersigned.
    status, answer = await query(http, notary, {"server_keys": {origin.server_name: {}}})
    assert status == 200
    [served] = answer["server_keys"]
    assert served["verify_keys"] == origin_keys["verify_keys"]
    verify_signed_json(served, origin.server_name, next(iter(keys_of(origin_keys).values())))
    verify_signed_json(served, notary.server_name, next(iter(keys_of(notary_keys).values())))
    origin.stop()
    # Still served from its cache while the origin is down ...
    status, answer = await get(http, notary, f"/_matrix/key/v2/query/{origin.server_name}")
    assert status == 200 and answer["server_keys"][0]["verify_keys"] == origin_keys["verify_keys"]
    # ... and a server trusting that notary (its key pinned) gets them through it, and keeps
    # them: it answers for the origin as a notary itself.
    pinned = {k: v["key"] for k, v in notary_keys["verify_keys"].items()}
    asker = start_federating_veche(make_server, test_ca, VECHE_FEDERATION__TRUSTED_KEY_SERVERS=[
        {"server_name": notary.server_name, "verify_keys": pinned}])
    status, answer = await query(http, asker, {"server_keys": {origin.server_name: {}}})
    assert status == 200 and len(answer["server_keys"]) == 1, asker.log()
    assert answer["server_keys"][0]["verify_keys"] == origin_keys["verify_keys"]
    assert asker.server_name in answer["server_keys"][0]["signatures"]
    # A notary whose signature does not match the pinned key is not believed.
    wrong = dict.fromkeys(pinned, origin_keys["verify_keys"][next(iter(origin_keys["verify_keys"]))]["key"])
    doubter = start_federating_veche(make_server, test_ca, VECHE_FEDERATION__TRUSTED_KEY_SERVERS=[
        {"server_name": notary.server_name, "verify_keys": wrong}])
    assert await query(http, doubter, {"server_keys": {origin.server_name: {}}}) == (
        200, {"server_keys": []})


async def test_tls_port_serves_only_federation(make_server: Any, test_ca: TestCA,
                                               http: aiohttp.ClientSession) -> None:
    import ssl

    server = start_federating_veche(make_server, test_ca)
    port = server.tls_port  # type: ignore[attr-defined]
    wait_for_port(port)
    context = ssl.create_default_context(cafile=str(test_ca.ca_file))
    base = f"https://localhost:{port}"
    async with http.get(base + "/_matrix/federation/v1/version", ssl=context) as r:
        assert r.status == 200 and (await r.json())["server"]["name"] == "Veche"
    async with http.get(base + "/_matrix/key/v2/server", ssl=context) as r:
        assert r.status == 200 and (await r.json())["server_name"] == server.server_name
    async with http.get(base + "/_matrix/client/versions", ssl=context) as r:
        assert r.status == 404 and (await r.json())["errcode"] == "M_UNRECOGNIZED"


def test_trusted_key_servers_config_is_json_in_env() -> None:
    from veche.config import load_config

    config = load_config(None, environ={"VECHE_FEDERATION__TRUSTED_KEY_SERVERS": json.dumps(
        [{"server_name": "notary.test", "verify_keys": {"ed25519:a": "abc"}}])})
    assert config.federation.trusted_key_servers[0].server_name == "notary.test"


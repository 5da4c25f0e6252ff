"""Veche and Synapse federating over TLS on loopback with the test CA: each fetches the
other's keys and accepts the other's signed requests.

Synapse runs once per session (fixture `synapse`); Veche runs on the session's database
backend. Both directions go through a client API call on one server that makes it send a
signed /query/profile to the other.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from tests.conftest import Client, ServerProcess
from tests.federation.peers import SynapsePeer
from tests.federation.pki import TestCA

pytestmark = pytest.mark.timeout(900)  # the first run installs Synapse


def verify_keys_of(response: dict[str, Any]) -> dict[str, Any]:
    return {k: decode_verify_key_bytes(k, decode_base64(v["key"]))
            for k, v in response["verify_keys"].items()}


def assert_signed_by(obj: dict[str, Any], server_name: str, keys: dict[str, Any]) -> None:
    signed_with = [k for k in obj["signatures"][server_name] if k in keys]
    assert signed_with, (server_name, obj["signatures"])
    for key_id in signed_with:
        verify_signed_json(obj, server_name, keys[key_id])


async def test_synapse_reads_a_veche_profile_with_a_request_veche_verifies(
        veche: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    assert (await alice.put(f"profile/{alice.user_id}/displayname",
                            {"displayname": "Alice of Veche"}))[0] == 200
    bob = await Client(http, synapse.client_url).register()
    # Synapse asks Veche (signed); Veche fetches Synapse's key to check the signature.
    status, body = await bob.get(f"profile/{quote(alice.user_id)}")
    assert (status, body) == (200, {"displayname": "Alice of Veche"}), synapse.log()
    status, body = await bob.get(f"profile/{quote(alice.user_id)}/displayname")
    assert (status, body) == (200, {"displayname": "Alice of Veche"})
    status, body = await bob.get(f"profile/{quote('@nobody:' + veche.server_name)}")
    assert status == 404
    # Veche now holds Synapse's keys: as a notary it serves them, countersigned.
    status, answer = await alice.post("/_matrix/key/v2/query",
                                      {"server_keys": {synapse.server_name: {}}}, token=False)
    assert status == 200 and len(answer["server_keys"]) == 1
    synapse_keys = answer["server_keys"][0]
    assert synapse_keys["server_name"] == synapse.server_name
    assert_signed_by(synapse_keys, synapse.server_name, verify_keys_of(synapse_keys))
    status, own = await alice.get("/_matrix/key/v2/server", token=False)
    assert_signed_by(synapse_keys, veche.server_name, verify_keys_of(own))


async def test_veche_reads_a_synapse_profile_with_a_request_synapse_verifies(
        veche: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession,
        test_ca: TestCA) -> None:
    bob = await Client(http, synapse.client_url).register()
    assert (await bob.put(f"profile/{quote(bob.user_id or '')}/displayname",
                          {"displayname": "Bob of Synapse"}))[0] == 200
    alice = await Client(http, veche.base_url).register()
    # Veche signs a /query/profile; Synapse fetches Veche's key to check it.
    status, body = await alice.get(f"profile/{quote(bob.user_id or '')}")
    assert (status, body) == (200, {"displayname": "Bob of Synapse"}), veche.log()
    status, body = await alice.get(f"profile/{quote(bob.user_id or '')}/displayname")
    assert (status, body) == (200, {"displayname": "Bob of Synapse"})
    status, body = await alice.get(f"profile/{quote('@nobody:' + synapse.server_name)}")
    assert status == 404
    # Synapse, asked as a notary over TLS, gives Veche's keys as it fetched them from Veche.
    context = ssl.create_default_context(cafile=str(test_ca.ca_file))
    async with http.post(f"https://localhost:{synapse.federation_port}/_matrix/key/v2/query",
                         json={"server_keys": {veche.server_name: {}}}, ssl=context) as r:
        assert r.status == 200
        answer = await r.json()
    status, own = await alice.get("/_matrix/key/v2/server", token=False)
    [veche_keys] = answer["server_keys"]
    assert veche_keys["verify_keys"] == own["verify_keys"]
    assert_signed_by(veche_keys, veche.server_name, verify_keys_of(own))

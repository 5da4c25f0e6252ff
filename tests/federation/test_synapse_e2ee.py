"""Issue 13, done-when 1 and 6: an encrypted room across Veche and Synapse, with matrix-js-sdk
(Rust crypto) on Veche and matrix-nio on Synapse (tests/federation/e2ee_story.py): messages
decrypt both ways, a new device on either side decrypts what is sent after it appeared, a
key request and the forwarded key cross as to-device messages; and neither server's
database holds a plaintext of the encrypted room, while both hold a control message of an
unencrypted room they share.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess
from tests.federation.e2ee_story import run_federated
from tests.federation.peers import SynapsePeer
from tests.federation.test_synapse_rooms import SynapseClient, eventually, messages, texts
from tests.integration.test_clients import _run_node, js_scenario
from tests.integration.test_e2ee import _database_text, _e2ee_lines

__all__ = ["js_scenario"]
pytestmark = pytest.mark.timeout(900)


def synapse_database_text(synapse: SynapsePeer) -> bytes:
    path = synapse.dir / "homeserver.db"
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal"))
                    if p.exists())


async def shared_plain_room(http: aiohttp.ClientSession, veche: ServerProcess,
                            synapse: SynapsePeer, nio_token: str) -> str:
    """A control: an unencrypted room on Synapse joined from Veche, with one message that
    both servers store in the clear."""
    bob = SynapseClient(http, synapse.client_url)
    bob.access_token = nio_token
    carol = await Client(http, veche.base_url).register()
    status, room = await bob.post("createRoom", {"preset": "public_chat", "name": "plain"})
    assert status == 200, room
    room_id = room["room_id"]
    status, body = await carol.post(f"join/{quote(room_id)}",
                                    params={"server_name": synapse.server_name})
    assert status == 200, body
    control = f"plain-federated-{secrets.token_hex(4)}"
    status, body = await bob.put(f"rooms/{quote(room_id)}/send/m.room.message/c1",
                                 {"msgtype": "m.text", "body": control})
    assert status == 200, body

    async def arrived() -> bool:
        return control in texts(await messages(carol, room_id))

    await eventually(arrived, "the control message on Veche")
    return control


async def test_encrypted_room_across_veche_and_synapse(
        veche: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession,
        js_scenario: Path) -> None:
    script = js_scenario.parent / "e2ee.mjs"

    async def run_js(state: dict[str, Any]) -> tuple[int, str, str]:
        rc, out, err = await _run_node(script, veche.base_url, "federated",
                                       stdin=json.dumps(state) + "\n")
        return rc, out, _e2ee_lines(err) if rc else err

    with tempfile.TemporaryDirectory(prefix="nio-fed-") as store:
        try:
            result = await run_federated(synapse.client_url, veche.base_url, store, run_js)
        except AssertionError as e:
            pytest.fail(f"federated E2EE story failed: {e}\n--- veche ---\n{veche.log()[-4000:]}"
                        f"\n--- synapse ---\n{synapse.log()[-3000:]}")
    assert result["forwarded"] >= 1
    assert result["js"]["key_requests"] >= 1, result["js"]
    control = await shared_plain_room(http, veche, synapse, result["nio_token"])
    await asyncio.sleep(1)  # Synapse writes through its own WAL: let it settle
    for name, stored in (("Veche", _database_text(veche)), ("Synapse", synapse_database_text(synapse))):
        assert control.encode() in stored, f"{name}: control not found, the search is blind"
        leaked = [s for s in result["secrets"] if s.encode() in stored]
        assert not leaked, f"{name} stored plaintext of encrypted messages: {leaked}"


async def test_cross_signing_verification_of_a_remote_user(
        veche: ServerProcess, synapse: SynapsePeer, js_scenario: Path) -> None:
    """matrix-js-sdk users on Veche and on Synapse verify each other (SAS by to-device across
    the servers) and then trust each other's device through cross-signing."""
    rc, out, err = await _run_node(js_scenario.parent / "e2ee.mjs", veche.base_url, "crossverify",
                                   stdin=json.dumps({"remote_url": synapse.client_url}) + "\n")
    assert rc == 0, f"crossverify exited {rc}:\n{_e2ee_lines(err)}\n--- veche ---\n{veche.log()[-4000:]}"
    assert json.loads([ln for ln in out.splitlines() if ln.startswith("{")][0])["emoji"]

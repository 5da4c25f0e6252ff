"""A fake remote server for federation tests: it publishes its keys over HTTPS (a
RecordingServer, which also answers the requests Veche makes to it from a table), signs
events and requests, and keeps its own view of a room Veche holds, so it can build events
in it the way a real server would."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import aiohttp
from signedjson.key import generate_signing_key
from yarl import URL

from tests.conftest import Client, ServerProcess
from tests.federation.https_servers import RecordingServer
from veche.core import auth as auth_rules
from veche.core.events import compute_event_id, sign_event
from veche.core.federation_auth import sign_request
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from veche.core.server_keys import own_keys_response

F1 = "/_matrix/federation/v1"


def q(value: str) -> str:
    return quote(value, safe="")


class FakeServer:
    def __init__(self, server: RecordingServer, host: str = "localhost") -> None:
        """`host`: its name's host part (the certificate covers localhost and 127.0.0.1);
        server ACLs, which ignore ports, tell servers apart by it."""
        self.server = server
        self.name = f"{host}:{server.port}"
        self.key = generate_signing_key("k1")
        body = own_keys_response(self.name, self.key, {}, int(time.time() * 1000) + 3600_000)
        server.responses["/_matrix/key/v2/server"] = (200, body, {})
        self._txn = 0

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.name}"

    def answer(self, path: str, body: Any, status: int = 200) -> None:
        """What this server answers to a request for `path` (the decoded path, no query)."""
        self.server.responses[path] = (status, body, {})

    def asked(self, prefix: str) -> list[str]:
        return [s.path for s in self.server.seen if s.path.startswith(prefix)]

    async def request(self, http: aiohttp.ClientSession, veche: ServerProcess, method: str,
                      target: str, body: Any = None) -> tuple[int, Any]:
        auth = sign_request(self.key, self.name, veche.server_name, method, target, body)
        async with http.request(method, URL(veche.base_url + target, encoded=True),
                                json=body, headers={"Authorization": auth}) as r:
            return r.status, await r.json(content_type=None)

    async def send(self, http: aiohttp.ClientSession, veche: ServerProcess,
                   pdus: list[dict[str, Any]], edus: list[dict[str, Any]] | None = None,
                   txn_id: str | None = None) -> tuple[int, Any]:
        self._txn += 1
        body = {"origin": self.name, "origin_server_ts": int(time.time() * 1000),
                "pdus": pdus, "edus": edus or []}
        return await self.request(http, veche, "PUT", f"{F1}/send/{txn_id or f't{self._txn}'}", body)


class SharedRoom:
    """A room on Veche as the fake server sees it: its state, its newest event and depth."""

    def __init__(self, room_id: str, rv: RoomVersion, state: dict[tuple[str, str], str],
                 latest: str, depth: int) -> None:
        self.room_id, self.rv, self.state = room_id, rv, state
        self.latest, self.depth = [latest], depth
        self.pdus: dict[str, dict[str, Any]] = {}

    @classmethod
    async def of(cls, client: Client, room_id: str) -> SharedRoom:
        status, events = await client.get(f"rooms/{q(room_id)}/state")
        assert status == 200, events
        state = {(e["type"], e["state_key"]): e["event_id"] for e in events}
        create = next(e for e in events if e["type"] == "m.room.create")
        rv = KNOWN_ROOM_VERSIONS[create["content"].get("room_version", "1")]
        status, page = await client.get(f"rooms/{q(room_id)}/messages",
                                        params={"dir": "b", "limit": "100"})
        assert status == 200, page
        return cls(room_id, rv, state, page["chunk"][0]["event_id"], len(page["chunk"]))

    async def refresh(self, client: Client) -> None:
        """Take in what Veche's users did since (their events become the newest)."""
        fresh = await SharedRoom.of(client, self.room_id)
        self.state, self.latest, self.depth = fresh.state, fresh.latest, max(self.depth, fresh.depth)

    def build(self, origin: FakeServer, sender: str, etype: str, content: dict[str, Any],
              state_key: str | None = None, *, prev: list[str] | None = None,
              state: dict[tuple[str, str], str] | None = None, advance: bool = True,
              key: Any = None) -> tuple[str, dict[str, Any]]:
        """A PDU signed by `origin` on top of `prev` (default: the newest event), its
        auth_events selected from `state` (default: the room's state as known)."""
        event: dict[str, Any] = {
            "type": etype, "room_id": self.room_id, "sender": sender, "content": content,
            "origin_server_ts": int(time.time() * 1000), "prev_events": prev or self.latest,
            "depth": self.depth + 1,
        }
        if state_key is not None:
            event["state_key"] = state_key
        known = self.state if state is None else state
        event["auth_events"] = sorted(
            known[k] for k in auth_rules.auth_types_for_event(self.rv, event) if k in known)
        pdu = sign_event(event, origin.name, key or origin.key, self.rv)
        event_id = compute_event_id(pdu, self.rv)
        self.pdus[event_id] = pdu
        if advance:
            self.latest, self.depth = [event_id], self.depth + 1
            if state_key is not None:
                self.state[(etype, state_key)] = event_id
        return event_id, pdu

"""A small load for the operations tests: users in a room sending messages and uploading
media, keeping what the server acknowledged (200) so a test can look for it afterwards."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.conftest import Client

PASSWORD = "correct horse battery"


@dataclass
class Acknowledged:
    messages: dict[str, str] = field(default_factory=dict)  # event_id -> body
    media: dict[str, bytes] = field(default_factory=dict)  # mxc URI -> content
    failures: int = 0  # sends that got no 200 (refused or cut off): not promised


async def room_of(http: aiohttp.ClientSession, base_url: str, users: int
                  ) -> tuple[list[Client], str]:
    """`users` registered clients, all joined to one room the first created."""
    clients = [await Client(http, base_url).register(password=PASSWORD) for _ in range(users)]
    status, body = await clients[0].post("createRoom", {"preset": "public_chat"})
    assert status == 200, body
    room_id = body["room_id"]
    for c in clients[1:]:
        status, body = await c.post(f"join/{room_id}", {})
        assert status == 200, body
    return clients, room_id


async def send_messages(client: Client, room_id: str, count: int, acked: Acknowledged,
                        stop: asyncio.Event | None = None) -> None:
    """Send up to `count` messages one after another (until `stop` is set)."""
    for i in range(count):
        if stop is not None and stop.is_set():
            return
        text = f"{client.user_id} message {i} {secrets.token_hex(4)}"
        try:
            status, body = await client.put(
                f"rooms/{room_id}/send/m.room.message/t{secrets.token_hex(8)}",
                {"msgtype": "m.text", "body": text})
        except (TimeoutError, aiohttp.ClientError, OSError):
            acked.failures += 1
            if stop is not None:
                await asyncio.sleep(0.05)  # the server is going away
            continue
        if status == 200:
            acked.messages[body["event_id"]] = text
        else:
            acked.failures += 1


async def upload_media(client: Client, count: int, acked: Acknowledged,
                       stop: asyncio.Event | None = None) -> None:
    for _ in range(count):
        if stop is not None and stop.is_set():
            return
        content = secrets.token_bytes(2048 + secrets.randbelow(30_000))
        try:
            async with client.session.post(
                    f"{client.base_url}/_matrix/media/v3/upload", data=content,
                    headers={"Authorization": f"Bearer {client.access_token}",
                             "Content-Type": "application/octet-stream"}) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            acked.failures += 1
            continue
        if status == 200:
            acked.media[body["content_uri"]] = content
        else:
            acked.failures += 1


async def room_messages(client: Client, room_id: str) -> dict[str, str]:
    """event_id -> body of every m.room.message in the room, read back with /messages."""
    found: dict[str, str] = {}
    token: str | None = None
    while True:
        params = {"dir": "b", "limit": "500"}
        if token:
            params["from"] = token
        status, body = await client.get(f"rooms/{room_id}/messages", params=params)
        assert status == 200, body
        for ev in body["chunk"]:
            if ev["type"] == "m.room.message":
                found[ev["event_id"]] = ev["content"].get("body")
        token = body.get("end")
        if not body["chunk"] or not token:
            return found


async def download(client: Client, mxc: str) -> tuple[int, bytes]:
    server_name, media_id = mxc[len("mxc://"):].split("/", 1)
    async with client.session.get(
            f"{client.base_url}/_matrix/client/v1/media/download/{server_name}/{media_id}",
            headers={"Authorization": f"Bearer {client.access_token}"}) as resp:
        return resp.status, await resp.read()


async def login(http: aiohttp.ClientSession, base_url: str, user_id: str) -> tuple[int, Any]:
    async with http.post(f"{base_url}/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": PASSWORD}) as resp:
        return resp.status, await resp.json(content_type=None)

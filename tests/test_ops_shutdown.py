"""Graceful shutdown: SIGTERM during a load loses no acknowledged message, answers every
parked long-poll before the process exits, lets a request whose body is still arriving
finish, and exits within [listen] shutdown_grace_s."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from typing import Any

import aiohttp

from tests.conftest import Client
from tests.ops_helpers import Acknowledged, download, room_messages, room_of, send_messages
from tests.test_appservices import Bridge
from tests.test_appservices import bridge as bridge  # noqa: F401  (the fixture)

GRACE_S = 8


async def park(client: Client, signalled: asyncio.Event) -> tuple[int, float]:
    """Long-polls of a user in no room, parked until the shutdown: (status, when the one
    parked at the SIGTERM was answered). Another user's load may wake one now and then
    (the stream moving on), so it parks again until the signal."""
    status, body = await client.get("sync", params={"timeout": "0"})
    assert status == 200
    while True:
        status, body = await client.get(
            "sync", params={"since": body["next_batch"], "timeout": "110000"})
        if signalled.is_set() or status != 200:
            return status, time.monotonic()


async def trickled_upload(port: int, token: str, content: bytes, go_on: asyncio.Event
                          ) -> tuple[int, Any]:
    """An upload whose body is half sent when the shutdown starts, the rest after."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
                  f"Content-Length: {len(content)}\r\n\r\n").encode())
    half = len(content) // 2
    writer.write(content[:half])
    await writer.drain()
    await go_on.wait()
    writer.write(content[half:])
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split()[1])
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    body = json.loads(await reader.readexactly(length))
    writer.close()
    return status, body


async def test_sigterm_under_load(make_server: Any, http: aiohttp.ClientSession) -> None:
    srv = make_server({"VECHE_LISTEN__SHUTDOWN_GRACE_S": str(GRACE_S)}, dev=True)
    senders, room_id = await room_of(http, srv.base_url, 4)
    sleepers = [await Client(http, srv.base_url).register() for _ in range(5)]
    signalled_event = asyncio.Event()
    parked = [asyncio.ensure_future(park(c, signalled_event)) for c in sleepers]
    acked = Acknowledged()
    stop = asyncio.Event()
    load = [asyncio.ensure_future(send_messages(c, room_id, 10_000, acked, stop)) for c in senders]
    upload_content = secrets.token_bytes(200_000)
    go_on = asyncio.Event()
    upload = asyncio.ensure_future(trickled_upload(srv.port, senders[0].access_token or "",
                                                   upload_content, go_on))
    await asyncio.sleep(1.5)  # the load runs, the long-polls are parked
    assert len(acked.messages) > 10
    assert not any(p.done() for p in parked), [p.result() for p in parked if p.done()]

    assert srv.proc is not None
    signalled = time.monotonic()
    signalled_event.set()
    srv.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    go_on.set()  # the upload's second half arrives during the shutdown
    rc = await asyncio.to_thread(srv.proc.wait, GRACE_S + 10)
    exited = time.monotonic()
    stop.set()
    await asyncio.gather(*load)

    assert rc == 0, srv.log()
    assert exited - signalled < GRACE_S + 2, exited - signalled
    # Every parked long-poll was answered, at once, before the process went.
    for status, answered in await asyncio.gather(*parked):
        assert status == 200
        assert answered - signalled < GRACE_S / 2  # at once, not at the end of the grace
        assert answered < exited
    status, uploaded = await upload
    assert status == 200, uploaded

    srv.proc = None
    await asyncio.to_thread(srv.start)
    reader = senders[0]
    stored = await room_messages(reader, room_id)
    lost = {e: b for e, b in acked.messages.items() if stored.get(e) != b}
    assert not lost, f"{len(lost)} of {len(acked.messages)} acknowledged messages lost"
    assert (200, upload_content) == await download(reader, uploaded["content_uri"])
    # And the server takes new messages after the restart.
    status, _ = await reader.put(f"rooms/{room_id}/send/m.room.message/after",
                                 {"msgtype": "m.text", "body": "after the restart"})
    assert status == 200


async def test_idle_server_stops_at_once(make_server: Any) -> None:
    srv = make_server({"VECHE_LISTEN__SHUTDOWN_GRACE_S": "30"})
    assert srv.proc is not None
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = await asyncio.to_thread(srv.proc.wait, 30)
    assert rc == 0
    assert time.monotonic() - started < 10  # the grace (30 s) is a limit, not a wait


async def test_sigterm_delivers_queued_appservice_transactions(bridge: Bridge, http: Any) -> None:
    """Events queued for an application service that is failing at the moment reach it
    during the shutdown (the server retries within the grace period), not never."""
    srv = bridge.server
    appservice = Client(http, srv.base_url)
    appservice.access_token = bridge.as_token
    status, body = await appservice.post("register", {
        "type": "m.login.application_service", "username": "_br_carol", "inhibit_login": True})
    assert status == 200
    carol = body["user_id"]
    human = await Client(http, srv.base_url).register()
    status, body = await human.post("createRoom", {"invite": [carol]})
    room_id = body["room_id"]
    await bridge.wait_for(lambda: bridge.events(room_id, "m.room.member"))
    status, _ = await appservice.post(f"join/{room_id}", {}, params={"user_id": carol})
    assert status == 200
    bridge.fail_next = 1  # the next transaction fails: the server waits a second, then retries
    sent = []
    for i in range(3):
        status, body = await human.put(f"rooms/{room_id}/send/m.room.message/s{i}",
                                       {"msgtype": "m.text", "body": f"before the stop {i}"})
        assert status == 200
        sent.append(body["event_id"])
    assert srv.proc is not None
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = await asyncio.to_thread(srv.proc.wait, 30)
    assert rc == 0
    assert time.monotonic() - started < 10 + 2
    assert [e["event_id"] for e in bridge.events(room_id)] == sent

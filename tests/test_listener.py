"""Connection timeouts: a request head that trickles in and an idle keep-alive connection are
closed, so such sockets cannot pile up; a long-polling /sync is not cut off."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import Client

TIMEOUTS = {"VECHE_LISTEN__HEADER_TIMEOUT_S": "1.5", "VECHE_LISTEN__KEEPALIVE_TIMEOUT_S": "2"}


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> float:
    """Seconds until the server closes the connection (reading whatever it sends)."""
    start = time.monotonic()
    async with asyncio.timeout(limit):
        while await reader.read(4096):
            pass
    return time.monotonic() - start


async def test_trickled_request_head_is_cut_off(make_server: Any) -> None:
    srv = make_server(TIMEOUTS, dev=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    start = time.monotonic()
    writer.write(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()

    async def trickle() -> None:
        # A header byte every 0.3 s keeps the connection busy, never finishing the head.
        while not reader.at_eof():
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.3)

    trickler = asyncio.create_task(trickle())
    try:
        await _closed_after(reader, 10)
    finally:
        trickler.cancel()
        writer.close()
    # Closed by the 1.5 s head timeout, before the 2 s keep-alive one could have done it.
    assert 1.2 < time.monotonic() - start < 1.95


async def test_silent_connection_is_cut_off(make_server: Any) -> None:
    srv = make_server(TIMEOUTS, dev=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        assert 1.2 < await _closed_after(reader, 10) < 1.95
    finally:
        writer.close()


async def test_idle_keepalive_connection_is_closed(make_server: Any) -> None:
    srv = make_server(TIMEOUTS, dev=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        # The connection is kept alive for another request, then closed when idle.
        assert 1.5 < await _closed_after(reader, 10) < 4
    finally:
        writer.close()


async def test_long_poll_outlives_the_keepalive_timeout(make_server: Any, http: Any) -> None:
    srv = make_server(TIMEOUTS, dev=True)
    alice = await Client(http, srv.base_url).register()
    status, first = await alice.get("sync")
    assert status == 200
    start = time.monotonic()
    status, body = await alice.get("sync", params={"since": first["next_batch"], "timeout": "5000"})
    assert status == 200 and "next_batch" in body
    assert time.monotonic() - start > 4.5  # it waited the whole time, past both timeouts
    # A request head that arrives at a normal pace is unaffected.
    assert (await alice.get("account/whoami"))[0] == 200


async def _response_head(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float]:
    start = time.monotonic()
    async with asyncio.timeout(limit):
        head = await reader.readuntil(b"\r\n\r\n")
    return head, time.monotonic() - start


async def test_trickled_or_stalled_body_is_refused(make_server: Any, http: Any) -> None:
    srv = make_server({**TIMEOUTS, "VECHE_LISTEN__BODY_TIMEOUT_S": "1"}, dev=True)
    alice = await Client(http, srv.base_url).register()
    # A JSON body sent a byte every 0.3 s: answered 408 once the body time is up.
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)

    async def trickle() -> None:
        while not reader.at_eof():
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.3)

    writer.write(b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    trickler = asyncio.create_task(trickle())
    try:
        head, took = await _response_head(reader, 10)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert b'"M_UNKNOWN"' in await reader.read(4096)
        assert 0.8 < took < 2.5
    finally:
        trickler.cancel()
        writer.close()
    # An upload that stops sending part-way.
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(b"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + alice.access_token.encode() + b"\r\n"
                     b"Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
                     + b"x" * 5000)
        await writer.drain()
        head, took = await _response_head(reader, 10)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert 0.8 < took < 2.5
    finally:
        writer.close()
    # The server goes on answering prompt requests.
    status, body = await alice.post("login", {"type": "m.login.password",
                                              "identifier": {"type": "m.id.user", "user": "x"},
                                              "password": "y"}, token=False)
    assert status == 403, body

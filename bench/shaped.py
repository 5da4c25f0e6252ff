"""Scenario shaped_link: a phone on a throttled, lossy link (issue 14).

One user in `shaped_rooms` rooms of `shaped_messages` messages each, syncing through the
user-space shaper of bench/shaper.py (64 kbit/s shared by both directions, 500 ms one way,
3 % loss from a fixed seed, started again at each phase, a 1,000-packet queue). Set-up and the other user's sending go
round the shaper, at full speed; only the phone's own requests cross it. Measured:

- the first room list by sliding sync (MSC4186, 20 rooms, timeline_limit 1), as Element X
  asks for it on a new login; skipped with a line if the server answers 404;
- a classic initial /sync with an Element-like filter (lazy-loaded members, 20 events of
  timeline), with `Accept-Encoding: gzip` as a phone's HTTP library sends it (OkHttp for
  Element Android, reqwest for Element X, dart:io for FluffyChat), then the same again with
  a browser's `Accept-Encoding` (Element Web, Veche's web client on a phone's home screen);
- `shaped_live_s` seconds of live messages, one every 2 s into the rooms in turn, while the
  phone long-polls: send-to-arrival p50 and p99, and response bytes per delivered message.

Bytes are what the client receives in responses: status line, headers and body as sent
(compressed if the server compressed it). The shaper's own counters (IP packets both ways,
retransmissions included) are reported beside them.
"""

from __future__ import annotations

import asyncio
import gzip
import statistics
import time
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import brotli
import orjson

from bench import netns
from bench.scenarios import Api, BenchError, Sizes, _percentile
from bench.servers import Server
from bench.shaper import SERVER_ALIAS

# Element Web's filter, in substance: members lazily, 20 events of timeline per room.
ELEMENT_FILTER = {"room": {"state": {"lazy_load_members": True},
                           "timeline": {"limit": 20, "unread_thread_notifications": True}}}
SLIDING_PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
# Element X's first request, in substance: the first 20 rooms, their last event.
FIRST_LIST = {"lists": {"all_rooms": {
    "ranges": [[0, 19]], "timeline_limit": 1,
    "required_state": [["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""],
                       ["m.room.member", "$LAZY"], ["m.room.canonical_alias", ""]]}}}
# What phones' HTTP libraries send (matrix-rust-sdk's reqwest has only its gzip feature on).
PHONE_ACCEPT = "gzip"
# What Chromium sends since version 123 (Firefox the same, Safari without zstd).
BROWSER_ACCEPT = "gzip, deflate, br, zstd"
SEND_EVERY_S = 2.0
POLL_TIMEOUT_MS = 30_000


class Phone:
    """The phone's client: one keep-alive connection through the shaper; counts bytes."""

    def __init__(self, base_url: str, token: str, session: aiohttp.ClientSession) -> None:
        port = urlsplit(base_url).port
        self.base = f"http://{SERVER_ALIAS}:{port}"
        self.token = token
        self.session = session
        self.bytes = 0

    async def request(self, method: str, path: str, params: dict[str, str] | None = None,
                      body: Any = None, timeout: float = 900,
                      accept: str = PHONE_ACCEPT) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept-Encoding": accept}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.base + path, params=params, data=data,
                                        headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            raw = await resp.read()
            self.bytes += (len(f"HTTP/1.1 {resp.status} {resp.reason}\r\n") + 2 + len(raw)
                           + sum(len(k) + len(v) + 4 for k, v in resp.raw_headers))
            coding = resp.headers.get("Content-Encoding")
            if coding == "gzip":
                raw = gzip.decompress(raw)
            elif coding == "br":
                raw = brotli.decompress(raw)
            elif coding is not None:
                raise BenchError(f"{path}: answered in {coding}, which was not asked for")
            return resp.status, orjson.loads(raw) if raw else None


async def _fill(api: Api, sizes: Sizes) -> tuple[str, str, list[str]]:
    """The phone's user and a friend in `shaped_rooms` named rooms of messages."""
    (_, phone), (_, friend) = await api.users(2)
    friend_id = (await api.call("GET", "account/whoami", friend))[0]["user_id"]
    sem = asyncio.Semaphore(10)

    async def room(r: int) -> str:
        async with sem:
            out, _ = await api.call("POST", "createRoom", phone, {
                "preset": "private_chat", "name": f"Room {r}", "topic": f"What room {r} is about",
                "invite": [friend_id]})
            room_id = str(out["room_id"])
            await api.call("POST", f"join/{quote(room_id)}", friend, {})
            for m in range(sizes.shaped_messages):
                who = friend if m % 2 else phone
                await api.send(who, room_id, f"f{r}-{m}",
                               f"Message {m} of room {r}: a line of chat of ordinary length.")
            return room_id

    rooms = list(await asyncio.gather(*[room(r) for r in range(sizes.shaped_rooms)]))
    # Every room has its messages (a transaction ID used twice would not send twice).
    last = orjson.dumps({"room": {"timeline": {"limit": 1}}}).decode()
    body, _ = await api.sync(phone, flt=last, presence="offline")
    for room_id in rooms:
        (event,) = body["rooms"]["join"][room_id]["timeline"]["events"]
        if event["type"] != "m.room.message":
            raise BenchError(f"{room_id} does not end with a message")
    return phone, friend, rooms


def _link_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    return {"link_down_kib": (after.get("down_bytes", 0) - before.get("down_bytes", 0)) / 1024,
            "link_up_kib": (after.get("up_bytes", 0) - before.get("up_bytes", 0)) / 1024,
            "link_lost_packets": after.get("lost", 0) - before.get("lost", 0)}


async def shaped_link(server: Server, api: Api, sizes: Sizes) -> dict[str, Any]:
    if not netns.inside():
        return {"skipped": "not in the shaped-link namespace (run it by name: "
                           "python -m bench --scenarios shaped_link)"}
    t0 = time.perf_counter()
    phone_token, friend, rooms = await _fill(api, sizes)
    filter_id = (await api.call("POST", "user/" + quote(
        (await api.call("GET", "account/whoami", phone_token))[0]["user_id"]) + "/filter",
        phone_token, ELEMENT_FILTER))[0]["filter_id"]
    out: dict[str, Any] = {"setup_s": time.perf_counter() - t0}
    with netns.shaped_link() as link:
        connector = aiohttp.TCPConnector(limit=1)  # a phone's one connection
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            phone = Phone(api.base, phone_token, session)
            # 1. The first room list by sliding sync.
            link.reseed(f"{server.name} first list")
            stats0, t = link.stats(), time.perf_counter()
            status, body = await phone.request("POST", SLIDING_PATH, body=FIRST_LIST)
            if status == 404:
                out["first_list_skipped"] = f"{server.name} answers 404 to {SLIDING_PATH}"
            elif status != 200:
                raise BenchError(f"sliding sync: {status} {body}")
            else:
                listed = len(body.get("rooms", {}))
                if listed != min(20, len(rooms)):
                    raise BenchError(f"sliding sync gave {listed} rooms")
                out["first_list_s"] = time.perf_counter() - t
                out["first_list_kib"] = phone.bytes / 1024
                out["first_list"] = _link_delta(stats0, link.stats())
            # 2. A classic initial /sync, Element's way: as a phone's library asks, then as a
            # browser does.
            for key, accept in (("initial_sync", PHONE_ACCEPT), ("browser_sync", BROWSER_ACCEPT)):
                phone.bytes = 0
                link.reseed(f"{server.name} {key.replace('_', ' ')}")
                stats0, t = link.stats(), time.perf_counter()
                status, got = await phone.request("GET", "/_matrix/client/v3/sync", params={
                    "filter": str(filter_id), "timeout": "0", "set_presence": "online"},
                    accept=accept)
                if status != 200:
                    raise BenchError(f"initial sync: {status} {got}")
                joined = got.get("rooms", {}).get("join", {})
                if len(joined) != len(rooms):
                    raise BenchError(f"initial sync has {len(joined)} rooms of {len(rooms)}")
                out[f"{key}_s"] = time.perf_counter() - t
                out[f"{key}_kib"] = phone.bytes / 1024
                out[key] = _link_delta(stats0, link.stats())
                since = got["next_batch"]
            # 3. Live messages while the phone long-polls.
            out.update(await _live(api, phone, friend, rooms, since, sizes, link))
    return out


async def _live(api: Api, phone: Phone, friend: str, rooms: list[str], since: str,
                sizes: Sizes, link: netns.ShapedLink) -> dict[str, Any]:
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    phone.bytes = 0
    link.reseed("live")
    stats0 = link.stats()
    sending_done = asyncio.Event()

    async def send() -> None:
        start = time.perf_counter()
        n = int(sizes.shaped_live_s / SEND_EVERY_S)
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i * SEND_EVERY_S - time.perf_counter()))
            text = f"live {i}: is anyone there?"
            sent[text] = time.perf_counter()
            await api.send(friend, rooms[i % len(rooms)], f"live{i}", text)
        sending_done.set()

    async def poll() -> None:
        nonlocal since
        while not (sending_done.is_set() and len(arrived) >= len(sent)):
            status, body = await phone.request("GET", "/_matrix/client/v3/sync", params={
                "since": since, "timeout": str(POLL_TIMEOUT_MS), "set_presence": "online"})
            if status != 200:
                raise BenchError(f"live sync: {status} {body}")
            now = time.perf_counter()
            for room in body.get("rooms", {}).get("join", {}).values():
                for ev in room.get("timeline", {}).get("events", []):
                    text = ev.get("content", {}).get("body")
                    if text in sent and text not in arrived:
                        arrived[text] = now
            since = body["next_batch"]

    poller = asyncio.ensure_future(poll())
    await send()
    try:
        await asyncio.wait_for(poller, timeout=120)  # what is on its way arrives, or is lost
    except TimeoutError:
        pass
    latencies = [(arrived[k] - sent[k]) * 1000 for k in arrived]
    lost = len(sent) - len(arrived)
    return {"live_sent": len(sent), "live_lost": lost,
            "live_p50_ms": statistics.median(latencies) if latencies else None,
            "live_p99_ms": _percentile(latencies, 0.99) if latencies else None,
            "live_bytes_per_msg": phone.bytes / max(1, len(arrived)),
            "live": _link_delta(stats0, link.stats())}

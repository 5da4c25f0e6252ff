"""The federation scenario: a Veche and a Synapse federating over TLS (test CA, loopback),
one room with a user on each; each user in turn sends messages, and the other server's CPU
to receive them (until its user's /sync has the last one) is the figure compared.

Both servers run at once (it takes two to federate), so this scenario is run once for the
pair rather than once per server like the others (see bench/__main__.py).
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bench.peers import federating_veche_env, start_synapse_peer, wait_for_port
from bench.pki import TestCA
from bench.scenarios import TIMELINE_1000, Api, BenchError, Sizes, _settle
from bench.servers import Server, free_port, start_veche

IDLE_SAMPLE_S = 5.0
# At most this many messages sent and not yet in the receiving user's /sync. Synapse drops
# (prunes) a room's queue of received PDUs once it holds 100, leaving a gap for
# back-pagination to fill: a sender faster than the receiver must not run that far ahead.
WINDOW = 50


@dataclass
class Side:
    server: Server
    server_name: str
    api: Api
    user_id: str = ""
    token: str = ""
    since: str = ""
    idle_cpu_per_s: float = 0.0


def start_pair(workdir: Path) -> tuple[Server, str, Server, str]:
    """(Veche, its server name, Synapse, its server name), both federating on loopback."""
    ca = TestCA(workdir / "ca")
    tls_port = free_port()
    veche = start_veche(workdir, federating_veche_env(ca, tls_port))
    try:
        wait_for_port(tls_port)
        synapse = start_synapse_peer(workdir, ca, log_level="WARNING")
    except BaseException:
        veche.stop()
        raise
    return veche, f"localhost:{tls_port}", synapse.server, synapse.server_name


async def _eventually(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise BenchError(f"timed out waiting for {what}")


async def _joined(side: Side, room_id: str, user_id: str) -> bool:
    body, _ = await side.api.call("GET", f"rooms/{quote(room_id)}/joined_members", side.token)
    return user_id in body.get("joined", {})


async def _idle_rate(sides: list[Side], seconds: float) -> None:
    """Each server's background CPU (per second of wall time), measured over the same
    `seconds` with nothing sent: subtracted from the windows below to show what is left."""
    cpu0 = [s.server.cpu_seconds() for s in sides]
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    wall = time.perf_counter() - t0
    for s, c0 in zip(sides, cpu0, strict=True):
        s.idle_cpu_per_s = (s.server.cpu_seconds() - c0) / wall


async def _one_way(sender: Side, receiver: Side, room_id: str, n: int, tag: str,
                   rate: float = 0) -> dict[str, float]:
    """`sender`'s user sends n messages, one after the other, `rate` a second at most (0: no
    pacing) and never more than WINDOW ahead of what `receiver`'s user has seen; the window
    runs from the first send until that user has the last one in a /sync. Both servers' CPU
    over it."""
    want = {f"{tag}-{k}" for k in range(n)}
    order: list[str] = []
    progress = asyncio.Condition()

    async def read() -> None:
        try:
            await read_all()
        finally:  # the sender waits on this: wake it to go on, or to see the error
            async with progress:
                progress.notify_all()

    async def read_all() -> None:
        seen: set[str] = set()
        deadline = time.monotonic() + 900
        while seen != want:
            if time.monotonic() > deadline:
                raise BenchError(f"{tag}: the receiving user saw {len(seen)} of {n} messages")
            body, _ = await receiver.api.sync(receiver.token, receiver.since, 30_000,
                                              TIMELINE_1000, "offline")
            receiver.since = body["next_batch"]
            events = body.get("rooms", {}).get("join", {}).get(room_id, {}).get(
                "timeline", {}).get("events", [])
            for e in events:
                text = e.get("content", {}).get("body")
                if e["type"] == "m.room.message" and text in want and text not in seen:
                    seen.add(text)
                    order.append(text)
            async with progress:
                progress.notify_all()

    reading = asyncio.create_task(read())
    await asyncio.sleep(0.5)  # the long-poll is parked by now
    cpu_r0, cpu_s0 = receiver.server.cpu_seconds(), sender.server.cpu_seconds()
    t0 = time.perf_counter()
    for k in range(n):
        if rate > 0:
            await asyncio.sleep(max(0.0, t0 + k / rate - time.perf_counter()))
        if k - len(order) >= WINDOW:
            async with progress:
                await progress.wait_for(lambda k=k: k - len(order) < WINDOW or reading.done())
        if reading.done():
            reading.result()  # the reader's error, if it gave up
        await sender.api.send(sender.token, room_id, f"{tag}{k}", f"{tag}-{k}")
    sent = time.perf_counter() - t0
    await reading
    wall = time.perf_counter() - t0
    received = receiver.server.cpu_seconds() - cpu_r0
    sending = sender.server.cpu_seconds() - cpu_s0
    if order != [f"{tag}-{k}" for k in range(n)]:
        raise BenchError(f"{tag}: messages arrived out of order")
    per = 1000 / n
    return {
        "receive_cpu_s_per_1000": received * per,
        "receive_cpu_s_per_1000_net": (received - receiver.idle_cpu_per_s * wall) * per,
        "send_cpu_s_per_1000": sending * per,
        "send_cpu_s_per_1000_net": (sending - sender.idle_cpu_per_s * wall) * per,
        "send_s": sent,
        "wall_s": wall,
    }


async def run(veche: Server, veche_name: str, synapse: Server, synapse_name: str,
              sizes: Sizes) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        v = Side(veche, veche_name, Api(veche.base_url, session))
        s = Side(synapse, synapse_name, Api(synapse.base_url, session))
        for side in (v, s):
            side.user_id, side.token = await side.api.register()
        # The room is Synapse's; Veche's user joins it over federation (make_join/send_join).
        out, _ = await s.api.call("POST", "createRoom", s.token,
                                  {"preset": "public_chat", "room_version": "10"})
        room_id = out["room_id"]
        await v.api.call("POST", f"join/{quote(room_id)}", v.token, {},
                         params={"server_name": s.server_name, "via": s.server_name})
        await _eventually(lambda: _joined(s, room_id, v.user_id), "Synapse to see the join")
        await _eventually(lambda: _joined(v, room_id, s.user_id), "Veche to see the room")
        for side in (v, s):
            body, _ = await side.api.sync(side.token, None, 0, TIMELINE_1000, "offline")
            side.since = body["next_batch"]
        n = sizes.fed_messages
        # Warm up both ways (keys fetched, connections open, caches filled) before measuring.
        await _one_way(s, v, room_id, min(20, n), "wa")
        await _one_way(v, s, room_id, min(20, n), "wb")
        settle = [await _settle(x.server, 60) for x in (v, s)]
        await _idle_rate([v, s], IDLE_SAMPLE_S if n >= 100 else 1.0)
        print(f"  federation: idle CPU Veche {v.idle_cpu_per_s:.3f}/s, Synapse "
              f"{s.idle_cpu_per_s:.3f}/s; settled in {settle[0]:.1f}s, {settle[1]:.1f}s",
              file=sys.stderr, flush=True)
        legs: dict[str, dict[str, float]] = {}
        # Paced (the same traffic both ways), then as fast as each sender goes (the slower
        # receiver then gets fuller transactions).
        for suffix, rate in (("", sizes.fed_rate), ("_unpaced", 0)) if sizes.fed_rate else (("", 0),):
            for name, sender, receiver, tag in (("to_veche", s, v, "a"), ("to_synapse", v, s, "b")):
                print(f"  federation: {name}{suffix}", file=sys.stderr, flush=True)
                await _settle(veche, 60)
                await _settle(synapse, 60)
                legs[name + suffix] = await _one_way(sender, receiver, room_id, n,
                                                     tag + suffix, rate)
    return {"veche_version": veche.version, "synapse_version": synapse.version,
            "messages": float(n), "rate": float(sizes.fed_rate), "room_version": "10",
            "idle_cpu_per_s": {"veche": v.idle_cpu_per_s, "synapse": s.idle_cpu_per_s},
            **legs}


def run_pair(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    """Start both servers, run the scenario, stop both; an error is reported, not raised."""
    print("federation: starting Veche and Synapse", file=sys.stderr, flush=True)
    veche, veche_name, synapse, synapse_name = start_pair(workdir)
    try:
        t0 = time.perf_counter()
        result = asyncio.run(run(veche, veche_name, synapse, synapse_name, sizes))
        print(f"federation: done in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
        return result
    except Exception as e:  # reported in the table, as the per-server scenarios' errors are
        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    finally:
        veche.stop()
        synapse.stop()

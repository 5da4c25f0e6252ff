"""A/B of a received PDU's CPU: two Veches (A and B) joined to one Synapse room receive the
same PDUs at 5/s while each one's user long-polls /sync; B's CPU over A's, per round.

Both run at once on the same machine, so its load moves both alike: a change of a few
percent shows, where two runs of the full federation scenario one after the other differ
by more than that. A runs the code in --a-src (e.g. a `git worktree` of the commit before
the change) ahead of the installed one; B runs this checkout. An A/A run (no --a-src)
reads 0.99-1.04 on this machine.

    python -m bench.federation_ab --a-src /tmp/old/src --messages 150 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp

from bench.federation import Side, _eventually, _joined
from bench.peers import federating_veche_env, start_synapse_peer, wait_for_port
from bench.pki import TestCA
from bench.scenarios import TIMELINE_1000, Api
from bench.servers import Server, free_port, start_veche

RATE = 5.0  # messages a second, as the full scenario's paced leg


async def _read_until(side: Side, room_id: str, want: set[str]) -> None:
    seen: set[str] = set()
    while seen != want:
        body, _ = await side.api.sync(side.token, side.since, 30_000, TIMELINE_1000, "offline")
        side.since = body["next_batch"]
        room = body.get("rooms", {}).get("join", {}).get(room_id, {})
        seen |= {e.get("content", {}).get("body") for e in room.get("timeline", {}).get("events", [])
                 } & want


async def _run(a: Side, b: Side, s: Side, messages: int, rounds: int) -> list[float]:
    for side in (a, b, s):
        side.user_id, side.token = await side.api.register()
    out, _ = await s.api.call("POST", "createRoom", s.token,
                              {"preset": "public_chat", "room_version": "10"})
    room_id = out["room_id"]
    for side in (a, b):
        await side.api.call("POST", f"join/{quote(room_id)}", side.token, {},
                            params={"server_name": s.server_name, "via": s.server_name})
        await _eventually(lambda side=side: _joined(side, room_id, s.user_id), "the join")
        body, _ = await side.api.sync(side.token, None, 0, TIMELINE_1000, "offline")
        side.since = body["next_batch"]
    ratios = []
    for r in range(rounds + 1):  # round 0 warms up (keys, connections, caches)
        n = 20 if r == 0 else messages
        want = {f"r{r}-{k}" for k in range(n)}
        readers = [asyncio.create_task(_read_until(x, room_id, want)) for x in (a, b)]
        await asyncio.sleep(0.5)  # both long-polls parked
        cpu_a, cpu_b = a.server.cpu_seconds(), b.server.cpu_seconds()
        t0 = time.perf_counter()
        for k in range(n):
            await asyncio.sleep(max(0.0, t0 + k / RATE - time.perf_counter()))
            await s.api.send(s.token, room_id, f"r{r}-{k}", f"r{r}-{k}")
        await asyncio.wait_for(asyncio.gather(*readers), 300)
        used_a, used_b = a.server.cpu_seconds() - cpu_a, b.server.cpu_seconds() - cpu_b
        if r:
            ratios.append(used_b / used_a)
            print(f"round {r}: A {used_a * 1000 / n:.2f}, B {used_b * 1000 / n:.2f} CPU-s per"
                  f" 1,000 PDUs; B/A {used_b / used_a:.3f}", flush=True)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a-src", help="the src directory A runs (default: this checkout's)")
    parser.add_argument("--messages", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="veche-ab-"))
    ca = TestCA(work / "ca")
    ports = free_port(), free_port()
    servers: list[Server] = []
    try:
        for name, port, extra in (("a", ports[0], {"PYTHONPATH": args.a_src} if args.a_src else {}),
                                  ("b", ports[1], {})):
            servers.append(start_veche(work, {**federating_veche_env(ca, port), **extra},
                                       name=f"veche-{name}"))
            wait_for_port(port)
        synapse = start_synapse_peer(work, ca, log_level="WARNING")
        try:
            async def run() -> list[float]:
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                    a, b = (Side(v, f"localhost:{p}", Api(v.base_url, http))
                            for v, p in zip(servers, ports, strict=True))
                    s = Side(synapse.server, synapse.server_name,
                             Api(synapse.server.base_url, http))
                    return await _run(a, b, s, args.messages, args.rounds)

            ratios = asyncio.run(run())
        finally:
            synapse.stop()
    finally:
        for v in servers:
            v.stop()
    print(f"B/A median {statistics.median(ratios):.3f} over {len(ratios)} rounds")


if __name__ == "__main__":
    main()

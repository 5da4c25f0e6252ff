"""`python -m bench.gzip_levels`: which gzip level for /sync answers (http/compression.py).

Starts a Veche, fills one user's account as the shaped_link scenario does (50 rooms of 20
messages), takes the bodies of an Element-like initial /sync and of a live /sync carrying
one message, and compresses each at every level: size, and CPU time per compression
(best of 20 runs, so the busy machine's noise is left out as far as it can be).
"""

from __future__ import annotations

import asyncio
import gzip
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson

from bench.scenarios import Api, Sizes
from bench.servers import start_veche
from bench.shaped import ELEMENT_FILTER, _fill


async def bodies(base_url: str) -> dict[str, bytes]:
    async with aiohttp.ClientSession() as fill_session:
        phone, friend, rooms = await _fill(Api(base_url, fill_session), Sizes())
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        api = Api(base_url, session)
        plain = {"Authorization": f"Bearer {phone}", "Accept-Encoding": "identity"}
        flt = quote(orjson.dumps(ELEMENT_FILTER).decode())
        async with session.get(f"{base_url}/_matrix/client/v3/sync?filter={flt}",
                               headers=plain) as r:
            initial = await r.read()
        since = orjson.loads(initial)["next_batch"]
        await api.send(friend, rooms[0], "one", "live 1: is anyone there?")
        async with session.get(f"{base_url}/_matrix/client/v3/sync?since={quote(since)}"
                               f"&filter={flt}", headers=plain) as r:
            live = await r.read()
    return {"initial /sync": initial, "live /sync, one message": live}


def cpu_ms(data: bytes, level: int) -> float:
    best = float("inf")
    for _ in range(20):
        t = time.process_time()
        gzip.compress(data, compresslevel=level, mtime=0)
        best = min(best, time.process_time() - t)
    return best * 1000


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="veche-gzip-") as tmp:
        server = start_veche(Path(tmp))
        try:
            found = asyncio.run(bodies(server.base_url))
        finally:
            server.stop()
    print("| body | bytes | level | gzip bytes | ratio | CPU ms |")
    print("|---|---|---|---|---|---|")
    for name, data in found.items():
        for level in (1, 3, 6, 9):
            size = len(gzip.compress(data, compresslevel=level, mtime=0))
            print(f"| {name} | {len(data):,} | {level} | {size:,} | {size / len(data):.3f} "
                  f"| {cpu_ms(data, level):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

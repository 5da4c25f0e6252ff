"""`python -m bench.answer_bytes`: what the bytes of the shaped link's answers are made of.

Starts Veche and Synapse (`compress: true`, as in the shaped_link scenario), fills each as
that scenario does (one user in 50 rooms of 20 messages), takes the uncompressed bodies of
the first room list (sliding sync) and of the initial /sync with Element's filter, and the
headers of their gzip answers. For each body: its size raw, gzip 9 (what both servers send
a phone) and brotli 5 (what Veche sends a browser); then where the gzip bytes go, by taking
the parts out one after the other and compressing again:

- timestamps: every `origin_server_ts` the same;
- ages: every `unsigned.age` the same;
- IDs: every event and room ID (`$` or `!` and 43 characters of unpadded base64 of a
  SHA-256, random to a compressor) replaced by one constant;
- the rest: JSON structure, keys, user IDs, content, tokens.

And, each alone from the whole body, what a field costs: `unsigned.replaces_state`,
`prev_content` with `prev_sender`, `unsigned.membership`, `prev_batch`.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import brotli
import orjson

from bench.scenarios import Api, Sizes
from bench.servers import Server, start_synapse, start_veche
from bench.shaped import ELEMENT_FILTER, FIRST_LIST, SLIDING_PATH, _fill

ID = re.compile(rb'"[$!][A-Za-z0-9_-]{43}"')


async def bodies(base_url: str) -> dict[str, tuple[bytes, int]]:
    """Each answer's uncompressed body, and the bytes of its gzip answer's status line and
    headers."""
    async with aiohttp.ClientSession() as fill_session:
        api = Api(base_url, fill_session)
        phone, _, _ = await _fill(api, Sizes())
        user = (await api.call("GET", "account/whoami", phone))[0]["user_id"]
        filter_id = (await api.call("POST", f"user/{quote(user)}/filter", phone,
                                    ELEMENT_FILTER))[0]["filter_id"]
    out = {}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for name, method, path, params, body in (
                ("first room list", "POST", SLIDING_PATH, None, orjson.dumps(FIRST_LIST)),
                ("initial /sync", "GET", "/_matrix/client/v3/sync",
                 {"filter": str(filter_id), "timeout": "0"}, None)):
            found = []
            for accept in ("identity", "gzip"):
                async with session.request(method, base_url + path, params=params, data=body,
                                           headers={"Authorization": f"Bearer {phone}",
                                                    "Accept-Encoding": accept}) as r:
                    head = len(f"HTTP/1.1 {r.status} {r.reason}\r\n") + 2 + sum(
                        len(k) + len(v) + 4 for k, v in r.raw_headers)
                    found.append((await r.read(), head))
            out[name] = (found[0][0], found[1][1])
    return out


def _gz(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def _walk(node: Any, fn: Callable[[dict[str, Any]], None]) -> None:
    if isinstance(node, dict):
        fn(node)
        for value in list(node.values()):
            _walk(value, fn)
    elif isinstance(node, list):
        for value in node:
            _walk(value, fn)


def _without(doc: Any, fn: Callable[[dict[str, Any]], None]) -> bytes:
    doc = copy.deepcopy(doc)
    _walk(doc, fn)
    return orjson.dumps(doc)


def _same_ts(d: dict[str, Any]) -> None:
    if "origin_server_ts" in d:
        d["origin_server_ts"] = 1_700_000_000_000


def _same_age(d: dict[str, Any]) -> None:
    if isinstance(d.get("unsigned"), dict) and "age" in d["unsigned"]:
        d["unsigned"]["age"] = 1000


def _drop_unsigned(*keys: str) -> Callable[[dict[str, Any]], None]:
    def fn(d: dict[str, Any]) -> None:
        if isinstance(d.get("unsigned"), dict):
            for key in keys:
                d["unsigned"].pop(key, None)
    return fn


def _drop_prev_batch(d: dict[str, Any]) -> None:
    d.pop("prev_batch", None)


def breakdown(raw: bytes, head: int) -> dict[str, Any]:
    doc = orjson.loads(raw)
    whole = orjson.dumps(doc)  # as the servers send it: compact
    ids = ID.findall(whole)
    same_ts = orjson.loads(_without(doc, _same_ts))
    steps = [whole, orjson.dumps(same_ts), _without(same_ts, _same_age)]
    # Last, on the bytes: room IDs are keys, which one constant would merge.
    steps.append(ID.sub(b'"$X"', steps[-1]))
    sizes = [_gz(s) for s in steps]
    return {
        "raw": len(raw), "gzip": _gz(raw), "br": len(brotli.compress(raw, quality=5)),
        "head": head, "ids": len(ids), "distinct_ids": len(set(ids)),
        "ts_cost": sizes[0] - sizes[1], "age_cost": sizes[1] - sizes[2],
        "ids_cost": sizes[2] - sizes[3], "rest": sizes[3],
        "replaces_state": sizes[0] - _gz(_without(doc, _drop_unsigned("replaces_state"))),
        "prev_content": sizes[0] - _gz(_without(doc, _drop_unsigned("prev_content",
                                                                     "prev_sender"))),
        "membership": sizes[0] - _gz(_without(doc, _drop_unsigned("membership"))),
        "prev_batch": sizes[0] - _gz(_without(doc, _drop_prev_batch)),
    }


ROWS = [("raw", "uncompressed body"), ("gzip", "gzip 9"), ("br", "brotli 5"),
        ("head", "status line and headers (gzip answer)"), ("ids", "IDs in the body"),
        ("distinct_ids", "  of which distinct"),
        ("ts_cost", "gzip bytes: origin_server_ts"), ("age_cost", "gzip bytes: unsigned.age"),
        ("ids_cost", "gzip bytes: IDs"),
        ("rest", "gzip bytes: the rest"),
        ("replaces_state", "alone: unsigned.replaces_state"),
        ("prev_content", "alone: unsigned.prev_content + prev_sender"),
        ("membership", "alone: unsigned.membership"), ("prev_batch", "alone: prev_batch")]


def main() -> int:
    found: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="veche-bytes-") as tmp:
        for name, start in (("Veche", start_veche),
                            ("Synapse", lambda d: start_synapse(d, compress=True))):
            server: Server = start(Path(tmp) / name)
            try:
                got = asyncio.run(bodies(server.base_url))
            finally:
                server.stop()
            found[name] = {k: breakdown(*v) for k, v in got.items()}
    for answer in ("first room list", "initial /sync"):
        print(f"\n{answer}\n\n| bytes | Veche | Synapse |\n|---|---|---|")
        for key, label in ROWS:
            print(f"| {label} | {found['Veche'][answer][key]:,} "
                  f"| {found['Synapse'][answer][key]:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""brotli or gzip for client-API JSON answers, CORS headers only for requests from a browser
page, a Server header that names no versions."""

from __future__ import annotations

import gzip
from typing import Any
from urllib.parse import quote

import aiohttp
import brotli
import orjson

from tests.conftest import ServerProcess
from tests.sync_helpers import send
from veche.http.compression import THREAD_BYTES, accepts_gzip, choose_coding


async def _raw(homeserver: ServerProcess, path: str, token: str | None = None,
               **headers: str) -> tuple[aiohttp.ClientResponse, bytes]:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # auto_decompress off: the test sees the bytes on the wire.
    async with aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"]) as s:
        async with s.get(homeserver.base_url + path, headers=headers) as resp:
            return resp, await resp.read()


async def test_big_json_is_gzipped_when_accepted(homeserver: ServerProcess, make_client: Any) -> None:
    alice = await make_client().register()
    status, room = await alice.post("createRoom", {"name": "a room with a name"})
    assert status == 200
    for i in range(5):
        await send(alice, room["room_id"], f"message {i} " + "words " * 20)
    # Big enough to be compressed in a thread (compression.THREAD_BYTES).
    for i in range(40):
        await send(alice, room["room_id"], f"more {i} " + "lorem ipsum dolor " * 100)
    path = "/_matrix/client/v3/sync?filter=" + quote('{"room":{"timeline":{"limit":50}}}')
    plain_resp, plain = await _raw(homeserver, path, alice.access_token)
    assert "Content-Encoding" not in plain_resp.headers
    assert plain_resp.headers["Vary"] == "Accept-Encoding"
    body = orjson.loads(plain)
    assert room["room_id"] in body["rooms"]["join"]

    resp, wire = await _raw(homeserver, path, alice.access_token, **{"Accept-Encoding": "gzip, deflate"})
    assert resp.headers["Content-Encoding"] == "gzip"
    assert resp.headers["Vary"] == "Accept-Encoding"
    assert int(resp.headers["Content-Length"]) == len(wire)
    # Same answer (up to the age of events), a fraction of the bytes.
    unpacked = orjson.loads(gzip.decompress(wire))
    assert unpacked["next_batch"] == body["next_batch"]
    assert unpacked["rooms"]["join"].keys() == body["rooms"]["join"].keys()
    assert len(wire) < len(plain) / 2
    assert len(plain) >= THREAD_BYTES

    # q=0 refuses gzip.
    resp, wire = await _raw(homeserver, path, alice.access_token, **{"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in resp.headers
    orjson.loads(wire)


# What Chromium sends since version 123 (Firefox the same, Safari without zstd).
BROWSER = "gzip, deflate, br, zstd"


async def test_browsers_get_brotli(homeserver: ServerProcess, make_client: Any) -> None:
    alice = await make_client().register()
    status, room = await alice.post("createRoom", {"name": "a room with a name"})
    assert status == 200
    for i in range(40):
        await send(alice, room["room_id"], f"more {i} " + "lorem ipsum dolor " * 100)
    path = "/_matrix/client/v3/sync?filter=" + quote('{"room":{"timeline":{"limit":50}}}')
    plain_resp, plain = await _raw(homeserver, path, alice.access_token)
    assert "Content-Encoding" not in plain_resp.headers
    body = orjson.loads(plain)
    assert len(plain) >= THREAD_BYTES  # compressed in a thread

    resp, wire = await _raw(homeserver, path, alice.access_token, **{"Accept-Encoding": BROWSER})
    assert resp.headers["Content-Encoding"] == "br"
    assert resp.headers["Vary"] == "Accept-Encoding"
    assert int(resp.headers["Content-Length"]) == len(wire)
    unpacked = orjson.loads(brotli.decompress(wire))
    assert unpacked["next_batch"] == body["next_batch"]
    assert [e["event_id"] for e in unpacked["rooms"]["join"][room["room_id"]]["timeline"]["events"]] \
        == [e["event_id"] for e in body["rooms"]["join"][room["room_id"]]["timeline"]["events"]]
    _, gzipped = await _raw(homeserver, path, alice.access_token, **{"Accept-Encoding": "gzip"})
    assert len(wire) < len(gzipped)

    # A client that weighs gzip above brotli gets gzip; one that refuses brotli too.
    for header in ("gzip;q=1, br;q=0.5", "br;q=0, gzip"):
        resp, wire = await _raw(homeserver, path, alice.access_token, **{"Accept-Encoding": header})
        assert resp.headers["Content-Encoding"] == "gzip", header
        assert orjson.loads(gzip.decompress(wire))["next_batch"] == body["next_batch"]

    # A small answer too (a live /sync carrying one message), once it is worth compressing.
    await send(alice, room["room_id"], "one more, a line of ordinary length, " * 5)
    since = quote(body["next_batch"])
    resp, wire = await _raw(homeserver, f"/_matrix/client/v3/sync?since={since}",
                            alice.access_token, **{"Accept-Encoding": BROWSER})
    assert resp.headers["Content-Encoding"] == "br"
    assert len(wire) < THREAD_BYTES
    live = orjson.loads(brotli.decompress(wire))
    assert live["rooms"]["join"][room["room_id"]]["timeline"]["events"][-1]["content"]["body"] \
        .startswith("one more")



async def test_small_answers_are_not_compressed(homeserver: ServerProcess, make_client: Any) -> None:
    alice = await make_client().register()
    for accepted in ("gzip", BROWSER):
        resp, wire = await _raw(homeserver, "/_matrix/client/v3/account/whoami",
                                alice.access_token, **{"Accept-Encoding": accepted})
        assert resp.status == 200 and "Content-Encoding" not in resp.headers
        assert "Vary" not in resp.headers  # never compressed, so the same for every client
        assert orjson.loads(wire)["user_id"] == alice.user_id


async def test_server_header_names_no_versions(homeserver: ServerProcess) -> None:
    for path in ("/_matrix/client/versions", "/_matrix/client/v3/account/whoami"):  # 200, 401
        resp, _ = await _raw(homeserver, path)
        assert resp.headers["Server"] == "Veche", path


async def test_cors_headers_only_with_origin(homeserver: ServerProcess) -> None:
    resp, _ = await _raw(homeserver, "/_matrix/client/versions")
    assert resp.status == 200
    assert not any(h.startswith("Access-Control-") for h in resp.headers)
    resp, _ = await _raw(homeserver, "/_matrix/client/versions", Origin="https://app.element.io")
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    # Errors carry them too, or a browser page could not read the Matrix error.
    resp, wire = await _raw(homeserver, "/_matrix/client/v3/account/whoami", Origin="https://x.org")
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == "*"


def test_accept_encoding_parsing() -> None:
    assert accepts_gzip("gzip")
    assert accepts_gzip("deflate, gzip;q=0.5")
    assert accepts_gzip("GZIP")
    assert accepts_gzip("*")
    assert not accepts_gzip("")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("br, deflate")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("gzip; q=0.0")
    assert not accepts_gzip("gzip;q=x")


def test_choose_coding() -> None:
    assert choose_coding(BROWSER) == "br"
    assert choose_coding("gzip, deflate, br") == "br"  # Safari: equal weights, the smaller
    assert choose_coding("gzip") == "gzip"  # Element X, OkHttp, matrix-nio without brotli
    assert choose_coding("br") == "br"
    assert choose_coding("*") == "br"
    assert choose_coding("*;q=0.5, gzip") == "gzip"
    assert choose_coding("gzip;q=0.8, br;q=0.9") == "br"
    assert choose_coding("gzip;q=1.0, br;q=0.9") == "gzip"
    assert choose_coding("br;q=0, gzip;q=0.1") == "gzip"
    assert choose_coding("br;q=0, gzip;q=0") is None
    assert choose_coding("deflate, identity") is None
    assert choose_coding("") is None
    assert choose_coding("x-gzip") == "gzip"
    assert choose_coding(" BR ; Q=1 ") == "br"

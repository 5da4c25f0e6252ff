"""`veche serve` serves the web client at `/` without shadowing the Matrix APIs."""

from __future__ import annotations

import aiohttp

from veche.web_client import DIST


async def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession(auto_decompress=False) as s, s.get(url, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def test_client_and_apis_side_by_side(homeserver) -> None:
    base = homeserver.base_url
    status, headers, body = await _get(base + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body == (DIST / "index.html").read_bytes()
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-cache"
    # The client's own routes (deep links) get the page as well.
    status, _, body = await _get(base + "/rooms/welcome")
    assert status == 200 and body == (DIST / "index.html").read_bytes()

    wasm = next((DIST / "assets").glob("*.wasm"))
    status, headers, body = await _get(f"{base}/assets/{wasm.name}", **{"Accept-Encoding": "identity"})
    assert status == 200 and headers["Content-Type"] == "application/wasm"
    assert body == wasm.read_bytes()
    assert "immutable" in headers["Cache-Control"]
    # Browsers that take brotli get the precompressed file: a third of the bytes.
    status, headers, body = await _get(f"{base}/assets/{wasm.name}", **{"Accept-Encoding": "br"})
    assert status == 200 and headers["Content-Encoding"] == "br" and len(body) < wasm.stat().st_size / 2

    status, _, _ = await _get(base + "/assets/gone-0000.js")
    assert status == 404
    # The APIs answer as before, unknown API paths included (uncompressed, to read them here).
    plain = {"Accept-Encoding": "identity"}
    status, _, body = await _get(base + "/_matrix/client/versions", **plain)
    assert status == 200 and b"versions" in body
    status, _, body = await _get(base + "/_matrix/client/v3/no_such_endpoint", **plain)
    assert status == 404 and b"M_UNRECOGNIZED" in body
    status, _, body = await _get(base + "/.well-known/matrix/client", **plain)
    assert status == 200 and b"m.homeserver" in body


async def test_disabled_client_is_not_served(make_server) -> None:
    srv = make_server({"VECHE_WEB_CLIENT__ENABLED": "false"}, dev=True)
    status, _, body = await _get(srv.base_url + "/")
    assert status == 200 and b"<html" not in body and b"running" in body
    status, _, _ = await _get(srv.base_url + "/room/x")
    assert status == 404
    status, _, _ = await _get(srv.base_url + "/sw.js")
    assert status == 404

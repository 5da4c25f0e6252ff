"""The media repository: uploads, downloads, Range, headers, thumbnails, /create, admin CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from typing import Any

import aiohttp

from tests.conftest import ServerProcess
from tests.test_media_helpers import (
    animated_gif,
    image_of,
    media_files,
    png,
    raw,
    split_mxc,
)

V1 = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"
CSP = ("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
       "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")


async def upload(http: aiohttp.ClientSession, base: str, token: str, data: Any,
                 content_type: str = "application/octet-stream", filename: str | None = None) -> str:
    url = f"{base}{LEGACY}/upload" + (f"?filename={filename}" if filename else "")
    status, _, body = await raw(http, "POST", url, token, data=data,
                                headers={"Content-Type": content_type})
    assert status == 200, body
    uri: str = json.loads(body)["content_uri"]
    return uri


def assert_safe_headers(headers: Any) -> None:
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"


async def test_upload_download_roundtrip(homeserver: ServerProcess, make_client: Any,
                                         http: aiohttp.ClientSession) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    base = homeserver.base_url
    image = png(640, 480)
    uri = await upload(http, base, alice.access_token, image, "image/png", "caf%C3%A9.png")
    server, media_id = split_mxc(uri)
    assert server == homeserver.server_name

    status, headers, body = await raw(http, "GET", f"{base}{V1}/download/{server}/{media_id}", bob.access_token)
    assert status == 200 and body == image
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''caf%C3%A9.png"
    assert "immutable" in headers["Cache-Control"] and "max-age=31536000" in headers["Cache-Control"]
    assert headers.get("ETag")
    assert_safe_headers(headers)

    # The name in the path wins. New media is not on the frozen legacy route
    # (test_media_freeze has it serve older media).
    status, headers, body = await raw(http, "GET", f"{base}{V1}/download/{server}/{media_id}/other.png",
                                      bob.access_token)
    assert status == 200 and headers["Content-Disposition"] == "inline; filename*=utf-8''other.png"
    status, headers, body = await raw(http, "GET", f"{base}{LEGACY}/download/{server}/{media_id}")
    assert status == 404 and b"M_NOT_FOUND" in body

    # Authenticated download needs a token.
    status, _, body = await raw(http, "GET", f"{base}{V1}/download/{server}/{media_id}")
    assert status == 401 and b"M_MISSING_TOKEN" in body

    # Range: a slice, an open end, and an unsatisfiable one.
    status, headers, body = await raw(http, "GET", f"{base}{V1}/download/{server}/{media_id}",
                                      bob.access_token, headers={"Range": "bytes=10-19"})
    assert status == 206 and body == image[10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{len(image)}"
    status, headers, body = await raw(http, "GET", f"{base}{V1}/download/{server}/{media_id}",
                                      bob.access_token, headers={"Range": "bytes=-5"})
    assert status == 206 and body == image[-5:]
    status, headers, _ = await raw(http, "GET", f"{base}{V1}/download/{server}/{media_id}",
                                   bob.access_token, headers={"Range": f"bytes={len(image) + 10}-"})
    assert status == 416

    # A plain file keeps its type and name and is an attachment.
    doc = b"%PDF-1.4 not really\n" * 100
    uri = await upload(http, base, alice.access_token, doc, "application/pdf", "report.pdf")
    status, headers, body = await raw(http, "GET", f"{base}{V1}/download/{server}/{split_mxc(uri)[1]}",
                                      bob.access_token)
    assert status == 200 and body == doc and headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == "attachment; filename*=utf-8''report.pdf"

    for path in (f"{V1}/config", f"{LEGACY}/config"):
        status, _, body = await raw(http, "GET", base + path, alice.access_token)
        assert status == 200 and json.loads(body) == {"m.upload.size": 50 * 1024 * 1024}


async def test_active_content_is_not_rendered(homeserver: ServerProcess, make_client: Any,
                                              http: aiohttp.ClientSession) -> None:
    alice = await make_client().register()
    base = homeserver.base_url
    samples = {
        "text/html": b"<html><script>alert(document.cookie)</script></html>",
        "image/svg+xml": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "text/html; charset=utf-8": b"<script>alert(2)</script>",
    }
    for ctype, data in samples.items():
        uri = await upload(http, base, alice.access_token, data, ctype, "x.html")
        server, media_id = split_mxc(uri)
        status, headers, body = await raw(http, "GET", f"{base}{V1}/download/{server}/{media_id}",
                                          alice.access_token)
        assert status == 200 and body == data
        assert headers["Content-Disposition"].startswith("attachment"), headers
        assert_safe_headers(headers)


async def test_thumbnails(homeserver: ServerProcess, make_client: Any, http: aiohttp.ClientSession) -> None:
    alice = await make_client().register()
    base = homeserver.base_url
    uri = await upload(http, base, alice.access_token, png(1200, 600), "image/png")
    server, media_id = split_mxc(uri)
    url = f"{base}{V1}/thumbnail/{server}/{media_id}"

    async def thumb(**params: str) -> tuple[int, Any, bytes]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return await raw(http, "GET", f"{url}?{query}", alice.access_token)

    for w, h in ((32, 32), (96, 96), (20, 20), (50, 60)):
        status, headers, body = await thumb(width=str(w), height=str(h), method="crop")
        assert status == 200, body
        assert_safe_headers(headers)
        size = image_of(body).size
        want = (32, 32) if max(w, h) <= 32 else (96, 96)
        assert size == want, (w, h, size)
    for (w, h), box in (((320, 240), (320, 240)), ((640, 480), (640, 480)), ((800, 600), (800, 600)),
                        ((400, 300), (640, 480))):
        status, _, body = await thumb(width=str(w), height=str(h), method="scale")
        assert status == 200, body
        tw, th = image_of(body).size
        # Scaled to fit the chosen box, keeping the 2:1 aspect.
        assert tw == box[0] and th == box[0] // 2, (w, h, tw, th)

    # New media has no thumbnails on the frozen legacy route.
    status, _, legacy = await raw(http, "GET", f"{base}{LEGACY}/thumbnail/{server}/{media_id}"
                                  "?width=32&height=32&method=crop")
    assert status == 404 and b"M_NOT_FOUND" in legacy

    for params, code in (({"width": "32"}, "M_MISSING_PARAM"),
                         ({"width": "x", "height": "3"}, "M_INVALID_PARAM"),
                         ({"width": "32", "height": "32", "method": "stretch"}, "M_INVALID_PARAM"),
                         ({"width": "-1", "height": "3"}, "M_INVALID_PARAM")):
        status, _, body = await thumb(**params)
        assert status == 400 and code.encode() in body, (params, body)

    # Not an image: no thumbnail.
    uri = await upload(http, base, alice.access_token, b"just text", "text/plain")
    status, _, body = await raw(http, "GET", f"{base}{V1}/thumbnail/{server}/{split_mxc(uri)[1]}"
                                "?width=32&height=32", alice.access_token)
    assert status == 400 and b"M_UNKNOWN" in body
    # Claims to be an image but is not.
    uri = await upload(http, base, alice.access_token, b"GIF89a garbage", "image/gif")
    status, _, body = await raw(http, "GET", f"{base}{V1}/thumbnail/{server}/{split_mxc(uri)[1]}"
                                "?width=32&height=32", alice.access_token)
    assert status == 400 and b"M_UNKNOWN" in body


async def test_animated_thumbnail(homeserver: ServerProcess, make_client: Any,
                                  http: aiohttp.ClientSession) -> None:
    alice = await make_client().register()
    base = homeserver.base_url
    uri = await upload(http, base, alice.access_token, animated_gif(), "image/gif")
    server, media_id = split_mxc(uri)
    url = f"{base}{V1}/thumbnail/{server}/{media_id}?width=96&height=96&method=crop"
    status, headers, body = await raw(http, "GET", url + "&animated=true", alice.access_token)
    assert status == 200 and headers["Content-Type"] == "image/webp"
    img = image_of(body)
    assert img.size == (96, 96) and getattr(img, "n_frames", 1) == 4
    status, headers, body = await raw(http, "GET", url, alice.access_token)
    assert status == 200 and getattr(image_of(body), "n_frames", 1) == 1


async def test_async_upload(homeserver: ServerProcess, make_client: Any, http: aiohttp.ClientSession) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    base = homeserver.base_url
    status, body = await alice.post("/_matrix/media/v1/create")
    assert status == 200 and body["unused_expires_at"] > 0
    server, media_id = split_mxc(body["content_uri"])
    download = f"{base}{V1}/download/{server}/{media_id}"

    status, _, err = await raw(http, "GET", download + "?timeout_ms=200", bob.access_token)
    assert status == 504 and b"M_NOT_YET_UPLOADED" in err
    status, _, err = await raw(http, "PUT", f"{base}{LEGACY}/upload/{server}/{media_id}",
                               bob.access_token, data=b"not yours")
    assert status == 403 and b"M_FORBIDDEN" in err

    # A download waiting for the content gets it when it arrives.
    waiting = asyncio.ensure_future(raw(http, "GET", download + "?timeout_ms=10000", bob.access_token))
    await asyncio.sleep(0.3)
    status, _, err = await raw(http, "PUT", f"{base}{LEGACY}/upload/{server}/{media_id}?filename=a.txt",
                               alice.access_token, data=b"hello later", headers={"Content-Type": "text/plain"})
    assert status == 200, err
    status, headers, got = await waiting
    assert status == 200 and got == b"hello later"
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''a.txt"

    status, _, err = await raw(http, "PUT", f"{base}{LEGACY}/upload/{server}/{media_id}",
                               alice.access_token, data=b"again")
    assert status == 409 and b"M_CANNOT_OVERWRITE_MEDIA" in err
    status, _, err = await raw(http, "PUT", f"{base}{LEGACY}/upload/{server}/nosuchmedia",
                               alice.access_token, data=b"x")
    assert status == 404 and b"M_NOT_FOUND" in err
    media_files(homeserver.data_dir)


async def test_pending_limit_and_legacy_switch(make_server: Any, http: aiohttp.ClientSession) -> None:
    srv = make_server({"VECHE_MEDIA__MAX_PENDING_UPLOADS": "2",
                       "VECHE_MEDIA__ENABLE_LEGACY_MEDIA": "false"}, dev=True)
    from tests.conftest import Client

    alice = await Client(http, srv.base_url).register()
    for _ in range(2):
        assert (await alice.post("/_matrix/media/v1/create"))[0] == 200
    status, body = await alice.post("/_matrix/media/v1/create")
    assert status == 429 and body["errcode"] == "M_LIMIT_EXCEEDED"

    uri = await upload(http, srv.base_url, alice.access_token, b"data")
    server, media_id = split_mxc(uri)
    for path in (f"{LEGACY}/download/{server}/{media_id}", f"{LEGACY}/config",
                 f"{LEGACY}/thumbnail/{server}/{media_id}?width=1&height=1"):
        status, _, err = await raw(http, "GET", srv.base_url + path, alice.access_token)
        assert status == 404 and b"M_NOT_FOUND" in err, path
    status, _, got = await raw(http, "GET", f"{srv.base_url}{V1}/download/{server}/{media_id}",
                               alice.access_token)
    assert status == 200 and got == b"data"


def _cli(srv: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "veche", "media", *args], env=srv.env,
                          capture_output=True, text=True, timeout=60)


async def test_dedup_delete_quarantine_purge(homeserver: ServerProcess, make_client: Any,
                                             http: aiohttp.ClientSession) -> None:
    alice = await make_client().register()
    base = homeserver.base_url
    data = hashlib.sha256(alice.user_id.encode()).digest() * 1000
    sha = hashlib.sha256(data).hexdigest()
    first = await upload(http, base, alice.access_token, data)
    second = await upload(http, base, alice.access_token, data)
    assert first != second
    assert sha in media_files(homeserver.data_dir)

    def url(uri: str) -> str:
        return f"{base}{V1}/download/{'/'.join(split_mxc(uri))}"

    r = await asyncio.to_thread(_cli, homeserver, "delete", first)
    assert r.returncode == 0, r.stderr
    assert (await raw(http, "GET", url(first), alice.access_token))[0] == 404
    # The other media ID still holds the bytes.
    status, _, got = await raw(http, "GET", url(second), alice.access_token)
    assert status == 200 and got == data and sha in media_files(homeserver.data_dir)

    r = await asyncio.to_thread(_cli, homeserver, "quarantine", second)
    assert r.returncode == 0, r.stderr
    for u, token in ((url(second), alice.access_token), (url(second).replace(V1, LEGACY), None)):
        status, _, err = await raw(http, "GET", u, token)
        assert status == 404 and b"M_NOT_FOUND" in err

    r = await asyncio.to_thread(_cli, homeserver, "delete", second)
    assert r.returncode == 0, r.stderr
    assert sha not in media_files(homeserver.data_dir)
    r = await asyncio.to_thread(_cli, homeserver, "delete", second)
    assert r.returncode != 0 and "no such media" in r.stderr
    r = await asyncio.to_thread(_cli, homeserver, "delete", "mxc://elsewhere.org/abc")
    assert r.returncode != 0

    # Purge: media older than 0 seconds is everything; --remote-only touches nothing local.
    third = await upload(http, base, alice.access_token, b"purge me " + data[:32])
    r = await asyncio.to_thread(_cli, homeserver, "purge", "--older-than", "30d", "--remote-only")
    assert r.returncode == 0 and "purged 0" in r.stdout, r
    assert (await raw(http, "GET", url(third), alice.access_token))[0] == 200
    r = await asyncio.to_thread(_cli, homeserver, "purge", "--older-than", "30d")
    assert r.returncode == 0, r.stderr
    assert (await raw(http, "GET", url(third), alice.access_token))[0] == 200
    await asyncio.sleep(1.1)
    r = await asyncio.to_thread(_cli, homeserver, "purge", "--older-than", "1s")
    assert r.returncode == 0, r.stderr
    assert (await raw(http, "GET", url(third), alice.access_token))[0] == 404
    r = await asyncio.to_thread(_cli, homeserver, "purge", "--older-than", "soon")
    assert r.returncode != 0
    media_files(homeserver.data_dir)


async def test_media_of_an_unreachable_server(homeserver: ServerProcess, make_client: Any,
                                              http: aiohttp.ClientSession) -> None:
    """The server is asked (tests/federation/test_media.py); one that cannot be reached (no
    network here) is a 502, as Synapse answers, and nothing is cached."""
    alice = await make_client().register()
    for _ in range(2):
        status, _, body = await raw(http, "GET", f"{homeserver.base_url}{V1}/download/matrix.org/abcdef",
                                    alice.access_token)
        assert status == 502 and b"M_UNKNOWN" in body
    status, _, body = await raw(http, "GET", f"{homeserver.base_url}{V1}/download/matrix.org/a%2Fb",
                                alice.access_token, encoded=True)
    assert status == 404 and b"M_NOT_FOUND" in body  # not a media ID: nobody is asked


async def test_unused_ids_expire_and_uploads_are_rate_limited(make_server: Any,
                                                              http: aiohttp.ClientSession) -> None:
    from tests.conftest import Client

    srv = make_server({"VECHE_MEDIA__UNUSED_EXPIRY_MS": "1000", "VECHE_MEDIA__MAX_PENDING_UPLOADS": "1",
                       "VECHE_REGISTRATION__ENABLED": "true",
                       "VECHE_RATE_LIMITS__MEDIA_UPLOAD": json.dumps({"per_second": 0.1, "burst": 4})})
    alice = await Client(http, srv.base_url).register()
    status, body = await alice.post("/_matrix/media/v1/create")
    assert status == 200
    server, media_id = split_mxc(body["content_uri"])
    await asyncio.sleep(1.2)
    # Expired unused: the ID is gone and no longer counts against the pending limit.
    status, _, err = await raw(http, "PUT", f"{srv.base_url}{LEGACY}/upload/{server}/{media_id}",
                               alice.access_token, data=b"late")
    assert status == 404 and b"M_NOT_FOUND" in err
    status, _, err = await raw(http, "GET", f"{srv.base_url}{V1}/download/{server}/{media_id}",
                               alice.access_token)
    assert status == 404
    assert (await alice.post("/_matrix/media/v1/create"))[0] == 200
    # Four actions in the burst were used by 2 creates and 1 upload attempt; then 429.
    assert (await raw(http, "POST", f"{srv.base_url}{LEGACY}/upload", alice.access_token, data=b"a"))[0] == 200
    status, _, err = await raw(http, "POST", f"{srv.base_url}{LEGACY}/upload", alice.access_token, data=b"b")
    assert status == 429 and b"M_LIMIT_EXCEEDED" in err
    media_files(srv.data_dir)

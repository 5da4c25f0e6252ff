"""Media uploads under pressure: a 200 MB upload in bounded memory, over-size and truncated
bodies, bad media IDs, path tricks and an image bomb — each a 4xx, none leaving a stray file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import Client, ServerProcess
from tests.test_media_helpers import media_files, png_bomb, raw, split_mxc

V1 = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"
MiB = 1024 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def blocks(total: int, digest: Any = None) -> AsyncIterator[bytes]:
    """`total` bytes of varied content, 1 MiB at a time (never all in memory)."""

    async def gen() -> AsyncIterator[bytes]:
        sent = 0
        i = 0
        while sent < total:
            block = (hashlib.sha256(i.to_bytes(8, "big")).digest() * (MiB // 32))[: total - sent]
            if digest is not None:
                digest.update(block)
            sent += len(block)
            i += 1
            yield block

    return gen()


async def wait_clean(data_dir: Path) -> dict[str, Path]:
    """The store once in-flight requests have cleaned up (the server may finish after the
    client has its answer)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return media_files(data_dir)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_big_upload_streams_in_bounded_memory(make_server: Any, http: aiohttp.ClientSession) -> None:
    srv = make_server({"VECHE_MEDIA__MAX_UPLOAD_SIZE": str(300 * MiB)}, dev=True)
    assert srv.proc is not None
    alice = await Client(http, srv.base_url).register()
    base = srv.base_url
    # Warm up the upload path once, so the measure is of the big body alone.
    status, _, _ = await raw(http, "POST", f"{base}{LEGACY}/upload", alice.access_token, data=b"warm")
    assert status == 200
    before = rss_kib(srv.proc.pid)

    total = 200 * MiB
    digest = hashlib.sha256()
    status, _, body = await raw(http, "POST", f"{base}{LEGACY}/upload?filename=big.bin",
                                alice.access_token, data=blocks(total, digest),
                                headers={"Content-Type": "application/octet-stream"})
    assert status == 200, body
    grown_mib = (rss_kib(srv.proc.pid) - before) / 1024
    assert grown_mib < 30, f"server RSS grew by {grown_mib:.1f} MiB for a 200 MiB upload"
    server, media_id = split_mxc(json.loads(body)["content_uri"])

    url = f"{base}{V1}/download/{server}/{media_id}"
    got = hashlib.sha256()
    size = 0
    async with http.get(url, headers={"Authorization": f"Bearer {alice.access_token}"}) as resp:
        assert resp.status == 200 and resp.content_length == total
        async for chunk in resp.content.iter_chunked(MiB):
            got.update(chunk)
            size += len(chunk)
    assert size == total and got.hexdigest() == digest.hexdigest()
    grown_mib = (rss_kib(srv.proc.pid) - before) / 1024
    assert grown_mib < 30, f"server RSS grew by {grown_mib:.1f} MiB serving 200 MiB"

    # A slice in the middle, checked against the generator's bytes.
    start = 150 * MiB + 12345
    expected = (hashlib.sha256((150).to_bytes(8, "big")).digest() * (MiB // 32))[12345:12345 + 1000]
    status, headers, part = await raw(http, "GET", url, alice.access_token,
                                      headers={"Range": f"bytes={start}-{start + 999}"})
    assert status == 206 and part == expected
    assert headers["Content-Range"] == f"bytes {start}-{start + 999}/{total}"
    assert list(media_files(srv.data_dir)) and digest.hexdigest() in media_files(srv.data_dir)


async def _raw_http(port: int, head: bytes, body: bytes, close_write: bool) -> bytes:
    """Send bytes on a plain socket (for bodies no HTTP client would send) and read the answer."""

    def run() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(head + body)
            if close_write:
                s.shutdown(socket.SHUT_WR)
            out = b""
            try:
                while chunk := s.recv(65536):
                    out += chunk
            except OSError:
                pass
            return out

    return await asyncio.to_thread(run)


async def test_oversize_truncated_and_malformed_uploads(make_server: Any, http: aiohttp.ClientSession) -> None:
    srv = make_server({"VECHE_MEDIA__MAX_UPLOAD_SIZE": str(MiB)}, dev=True)
    alice = await Client(http, srv.base_url).register()
    base, token = srv.base_url, alice.access_token
    status, _, body = await raw(http, "GET", f"{base}{V1}/config", token)
    assert json.loads(body) == {"m.upload.size": MiB}

    # Exactly the limit is fine.
    status, _, body = await raw(http, "POST", f"{base}{LEGACY}/upload", token, data=b"x" * MiB)
    assert status == 200, body
    kept = await wait_clean(srv.data_dir)

    # Over the limit by Content-Length: refused before the body is read.
    status, _, body = await raw(http, "POST", f"{base}{LEGACY}/upload", token, data=b"x" * (MiB + 1))
    assert status == 413 and b"M_TOO_LARGE" in body
    # Over the limit with no Content-Length (chunked): refused while streaming.
    status, _, body = await raw(http, "POST", f"{base}{LEGACY}/upload", token,
                                data=blocks(MiB + 100_000))
    assert status == 413 and b"M_TOO_LARGE" in body
    # A Content-Length header that lies upwards, then the client gives up: no file kept.
    head = (f"POST {LEGACY}/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: 500000\r\n\r\n").encode()
    answer = await _raw_http(srv.port, head, b"y" * 200_000, close_write=True)
    # The server answers 400 (unless it sees the connection go first); never 200.
    assert answer == b"" or answer.split(b" ", 2)[1] == b"400", answer[:200]
    # A Content-Length that is not a number never reaches the handler.
    head = (f"POST {LEGACY}/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: 12abc\r\n\r\n").encode()
    answer = await _raw_http(srv.port, head, b"z" * 12, close_write=False)
    assert answer.split(b" ", 2)[1] == b"400", answer[:200]
    # Over-size to a /create'd ID, and a bad filename.
    status, created = await alice.post("/_matrix/media/v1/create")
    server, media_id = split_mxc(created["content_uri"])
    status, _, body = await raw(http, "PUT", f"{base}{LEGACY}/upload/{server}/{media_id}", token,
                                data=blocks(2 * MiB))
    assert status == 413 and b"M_TOO_LARGE" in body
    status, _, body = await raw(http, "POST", f"{base}{LEGACY}/upload?filename=" + "n" * 300, token,
                                data=b"abc")
    assert status == 400 and b"M_INVALID_PARAM" in body
    # Upload needs a token.
    status, _, body = await raw(http, "POST", f"{base}{LEGACY}/upload", None, data=b"abc")
    assert status == 401

    assert await wait_clean(srv.data_dir) == kept


def refused(bad_id: str, status: int, err: bytes) -> bool:
    # NUL is refused in any URL before routing (400); other bad IDs name no media (404).
    if "%00" in bad_id:
        return status == 400 and b"M_INVALID_PARAM" in err
    return status == 404 and b"M_NOT_FOUND" in err


async def test_bad_media_ids_and_path_tricks(homeserver: ServerProcess, make_client: Any,
                                             http: aiohttp.ClientSession) -> None:
    alice = await make_client().register()
    base, token = homeserver.base_url, alice.access_token
    status, _, body = await raw(http, "POST", f"{base}{LEGACY}/upload?filename=ok.txt", token, data=b"ok")
    server, media_id = split_mxc(json.loads(body)["content_uri"])
    before = await wait_clean(homeserver.data_dir)

    bad_ids = ["..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2Fetc%2Fpasswd",
               "a%00b", "a.b", "%E2%98%83", "x" * 300, media_id + "%2F..", "%2e%2e"]
    for bad in bad_ids:
        for prefix, tok in ((V1, token), (LEGACY, None)):
            for kind in ("download", "thumbnail"):
                url = f"{base}{prefix}/{kind}/{server}/{bad}?width=32&height=32"
                status, _, err = await raw(http, "GET", url, tok, encoded=True)
                assert refused(bad, status, err), (url, status, err[:200])
        status, _, err = await raw(http, "PUT", f"{base}{LEGACY}/upload/{server}/{bad}", token,
                                   data=b"x", encoded=True)
        assert refused(bad, status, err), (bad, status, err[:200])

    # Not server names: nobody is asked. (A real one that cannot be reached is a 502.)
    for bad_server in ("..", "%2e%2e", "%2Fetc", "localhost%2F..", "a_b.example", "a..b"):
        url = f"{base}{V1}/download/{bad_server}/{media_id}"
        status, _, err = await raw(http, "GET", url, token, encoded=True)
        assert status == 404 and b"M_NOT_FOUND" in err, (url, status, err[:200])
    url = f"{base}{V1}/download/evil.example/{media_id}"
    assert (await raw(http, "GET", url, token))[0] == 502

    # A file name is only ever a header value, percent-encoded.
    for name, header in (("..%2F..%2Fetc%2Fpasswd", "..%2F..%2Fetc%2Fpasswd"),
                         ("%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"),
                         ("a%22%3B%20b.txt", "a%22%3B%20b.txt")):
        status, headers, got = await raw(http, "GET", f"{base}{V1}/download/{server}/{media_id}/{name}",
                                         token, encoded=True)
        assert status == 200 and got == b"ok", (name, status)
        assert headers["Content-Disposition"] == f"attachment; filename*=utf-8''{header}"
    # Paths that climb out of the media prefix are not media routes at all.
    status, _, got = await raw(http, "GET", f"{base}{V1}/download/{server}/../../../../etc/passwd",
                               token, encoded=True)
    assert status == 404 and b"root:" not in got
    assert await wait_clean(homeserver.data_dir) == before


async def test_image_bomb_is_refused(homeserver: ServerProcess, make_client: Any,
                                     http: aiohttp.ClientSession) -> None:
    alice = await make_client().register()
    base, token = homeserver.base_url, alice.access_token
    bomb = png_bomb(30000, 30000)
    assert len(bomb) < 200
    status, _, body = await raw(http, "POST", f"{base}{LEGACY}/upload", token, data=bomb,
                                headers={"Content-Type": "image/png"})
    assert status == 200
    server, media_id = split_mxc(json.loads(body)["content_uri"])
    await asyncio.sleep(0.5)  # let the upload's thumbnail pre-generation try (and refuse)
    before = await wait_clean(homeserver.data_dir)
    for method in ("crop", "scale"):
        status, _, err = await raw(http, "GET", f"{base}{V1}/thumbnail/{server}/{media_id}"
                                   f"?width=32&height=32&method={method}", token)
        assert status == 413 and b"M_TOO_LARGE" in err, (status, err)
    status, _, err = await raw(http, "GET", f"{base}{V1}/thumbnail/{server}/{media_id}"
                               "?width=96&height=96&animated=true", token)
    assert status == 413
    # The bomb itself is stored as uploaded (only thumbnailing is refused); no thumbnail is.
    after = await wait_clean(homeserver.data_dir)
    assert after == before and hashlib.sha256(bomb).hexdigest() in after
    status, _, got = await raw(http, "GET", f"{base}{V1}/download/{server}/{media_id}", token)
    assert status == 200 and got == bomb

"""Other servers' media: fetched from the server in the mxc:// URI (spec: server-server
"Content Repository"), streamed to the content store under `media.max_upload_size`, cached,
and served from the cache from then on.

The authenticated federation endpoint is asked first; a server that does not know it (404
or 405 with M_UNRECOGNIZED, or no JSON) is asked the deprecated /_matrix/media/v3/download
with allow_remote=false. A file over the limit is refused as soon as it shows: by its
Content-Length before anything is read, else when the bytes counted pass the limit; the
connection is dropped and nothing is stored (502 M_TOO_LARGE, as Synapse answers).
Concurrent requests for the same media share one fetch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from veche.errors import MatrixError, not_found
from veche.federation.errors import FederationDenied, FederationError, HttpResponseError, path
from veche.media import multipart
from veche.storage import media as store_sql
from veche.storage.media import MediaRow

if TYPE_CHECKING:
    from veche.services.media import MediaService

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
# The whole fetch, connection to last byte: a peer trickling bytes cannot hold a download
# (and every client waiting on it) open for longer.
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=180, sock_connect=10, sock_read=60)
MAX_ERROR_BYTES = 64 * 1024
TOUCH_EVERY_MS = 3600 * 1000


def too_large(limit: int) -> MatrixError:
    return MatrixError(502, "M_TOO_LARGE", f"Remote media is larger than {limit} bytes")


def fetch_failed(why: str = "Failed to fetch remote media") -> MatrixError:
    return MatrixError(502, "M_UNKNOWN", why)


class _Unrecognized(Exception):
    """The peer does not serve the federation media endpoints."""


class RemoteMedia:
    def __init__(self, media: MediaService) -> None:
        self.media = media
        self.hs = media.hs
        self._inflight: dict[tuple[str, str], asyncio.Task[MediaRow]] = {}
        self._touched: dict[tuple[str, str], int] = {}

    @property
    def limit(self) -> int:
        return self.media.config.max_upload_size

    async def get(self, origin: str, media_id: str, timeout_ms: int,
                  allow_remote: bool = True) -> MediaRow:
        """The cached copy of mxc://origin/media_id, fetched first if need be."""
        row = await self.hs.db.run(store_sql.get_remote, origin, media_id)
        if row is not None and row.quarantined:
            raise not_found("Media not found")
        if row is not None and row.sha256 is not None and await self.media.store.exists(row.sha256):
            self._touch(origin, media_id)
            return row
        if not allow_remote:
            raise not_found("Remote media is not cached here (allow_remote=false)")
        # A closed server, or one not federating with `origin`: nothing is asked.
        if not self.hs.config.federation.enabled or not self.hs.federation_client.allowed(origin):
            raise not_found("Media of other servers is not available on this server")
        key = (origin, media_id)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(origin, media_id, timeout_ms))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        # Shielded: a client that gives up does not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    def _done(self, key: tuple[str, str], task: asyncio.Task[MediaRow]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: nobody may be left waiting for it

    def _touch(self, origin: str, media_id: str) -> None:
        now = int(time.time() * 1000)
        if now - self._touched.get((origin, media_id), 0) < TOUCH_EVERY_MS:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()
        self._touched[(origin, media_id)] = now
        self.hs.run_in_background(self.hs.db.run(store_sql.touch_remote, origin, media_id, now))

    # --- fetching ---------------------------------------------------------------------
    async def _fetch(self, origin: str, media_id: str, timeout_ms: int) -> MediaRow:
        wait = str(timeout_ms)
        try:
            try:
                return await self._download(origin, media_id, path(
                    "/_matrix/federation/v1/media/download/{}", media_id,
                    query={"timeout_ms": wait}), federation=True)
            except _Unrecognized:
                logger.info("%s has no federation media endpoints: asking /_matrix/media/v3", origin)
            return await self._download(origin, media_id, path(
                "/_matrix/media/v3/download/{}/{}", origin, media_id,
                query={"allow_remote": "false", "timeout_ms": wait, "allow_redirect": "true"}),
                federation=False)
        except FederationDenied:
            raise not_found("Media of this server is not available here") from None
        except (FederationError, multipart.MultipartError, aiohttp.ClientError,
                TimeoutError) as e:
            logger.warning("fetching mxc://%s/%s failed: %r", origin, media_id, e)
            raise fetch_failed() from None

    async def _download(self, origin: str, media_id: str, target: str, *,
                        federation: bool) -> MediaRow:
        client = self.hs.federation_client
        async with client.stream(origin, target, FETCH_TIMEOUT) as resp:
            if resp.status in (307, 308) and not federation and "Location" in resp.headers:
                async with client.stream_url(resp.headers["Location"], FETCH_TIMEOUT) as moved:
                    await self._check_answer(origin, moved, federation=False)
                    return await self._save(origin, media_id, moved.content.iter_chunked(CHUNK),
                                            moved.headers.get("Content-Type"),
                                            moved.headers.get("Content-Disposition"))
            await self._check_answer(origin, resp, federation=federation)
            if not federation:
                return await self._save(origin, media_id, resp.content.iter_chunked(CHUNK),
                                        resp.headers.get("Content-Type"),
                                        resp.headers.get("Content-Disposition"))
            reader = multipart.MultipartReader(
                multipart.boundary_of(resp.headers.get("Content-Type")),
                resp.content.iter_chunked(CHUNK))
            await reader.metadata()
            part = await reader.media_headers()
            location = part.get("location")
            if location is None:
                return await self._save(origin, media_id, reader.media(),
                                        part.get("content-type"), part.get("content-disposition"))
            # The bytes are elsewhere (a CDN, say): fetched on the same terms, never cached as a URL.
            async with client.stream_url(location, FETCH_TIMEOUT) as moved:
                await self._check_answer(origin, moved, federation=False)
                return await self._save(origin, media_id, moved.content.iter_chunked(CHUNK),
                                        moved.headers.get("Content-Type"),
                                        moved.headers.get("Content-Disposition"))

    async def _check_answer(self, origin: str, resp: aiohttp.ClientResponse, *,
                            federation: bool) -> None:
        """Raise for anything but a 200 whose announced length is within the limit."""
        if resp.status == 200:
            # A multipart body is the file plus a little framing (bounded by the reader).
            framing = multipart.MAX_OVERHEAD if federation else 0
            if resp.content_length is not None and resp.content_length > self.limit + framing:
                raise too_large(self.limit)  # before reading a byte of it
            return
        body: Any = None
        if resp.content_length is None or resp.content_length <= MAX_ERROR_BYTES:
            raw = await resp.content.read(MAX_ERROR_BYTES)
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = None
        errcode = body.get("errcode") if isinstance(body, dict) else None
        if federation and resp.status in (404, 405) and errcode in (None, "M_UNRECOGNIZED"):
            raise _Unrecognized()
        if resp.status == 404:
            raise not_found("Remote media not found")
        if resp.status == 504 and errcode == "M_NOT_YET_UPLOADED":
            raise MatrixError(504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet")
        if resp.status == 502 and errcode == "M_TOO_LARGE":
            raise too_large(self.limit)
        raise HttpResponseError(origin, resp.status, body)

    async def _save(self, origin: str, media_id: str, chunks: AsyncIterator[bytes],
                    content_type: str | None, disposition: str | None) -> MediaRow:
        """Stream `chunks` to the store (hashing, counting, stopping at the limit) and cache
        the result; nothing is kept of a body that breaks off or goes over."""
        store = self.media.store
        tmp = store.new_temp_file()
        digest = hashlib.sha256()
        size = 0
        try:
            with tmp.open("wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.limit:
                        raise too_large(self.limit)
                    digest.update(chunk)
                    f.write(chunk)
            sha = digest.hexdigest()
            ctype = _sane(content_type) or "application/octet-stream"
            name = multipart.filename_of(_sane(disposition))
            now = int(time.time() * 1000)
            async with self.media._lock(self.media._hash_locks, sha):
                await store.put(sha, tmp)
                await self.hs.db.run(store_sql.insert_remote, origin, media_id, now, sha, ctype,
                                     name, size)
        finally:
            tmp.unlink(missing_ok=True)
        logger.info("cached mxc://%s/%s (%d bytes)", origin, media_id, size)
        return MediaRow(media_id, None, now, sha, ctype, name, size, None, False)

    # --- the cache --------------------------------------------------------------------
    async def purge(self, older_than_ts: int) -> int:
        keys = await self.hs.db.run(store_sql.remote_not_accessed_since, older_than_ts)
        for i in range(0, len(keys), 500):
            await self.delete(keys[i:i + 500])
        return len(keys)

    async def delete(self, keys: list[tuple[str, str]]) -> None:
        hashes = await self.hs.db.run(store_sql.delete_remote, keys)
        await self.media._delete_unreferenced(hashes)


def _sane(value: str | None) -> str | None:
    """A header value fit to store and serve again, or None."""
    if value is None or len(value) > 255 or not value.isprintable():
        return None
    return value

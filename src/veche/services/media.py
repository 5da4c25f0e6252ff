"""The media repository: uploads streamed to the content store, downloads, thumbnails,
and the admin operations (delete, quarantine, purge).

Media of other servers comes through `remote` (services/remote_media.py): fetched over
federation and cached; a closed server answers 404 for it without asking anyone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veche.core.identifiers import is_valid_server_name
from veche.errors import MatrixError, forbidden, limit_exceeded, not_found
from veche.media import thumbnailer
from veche.media.store import LocalMediaStore, MediaStore
from veche.storage import media as store_sql
from veche.storage.media import MediaRow, ThumbnailRow

if TYPE_CHECKING:
    from aiohttp import StreamReader

    from veche.server import HomeServer
    from veche.services.media_preview import UrlPreviewer
    from veche.services.remote_media import RemoteMedia

logger = logging.getLogger(__name__)

MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
CHUNK = 64 * 1024
MAX_WAIT_MS = 60_000
DEFAULT_WAIT_MS = 20_000
TOUCH_EVERY_MS = 3600 * 1000


def too_large(error: str = "Upload too large") -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", error)


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_mxc(uri: str) -> tuple[str, str]:
    if not uri.startswith("mxc://"):
        raise ValueError("not an mxc:// URI")
    server_name, _, media_id = uri[len("mxc://"):].partition("/")
    if not server_name or not MEDIA_ID.match(media_id):
        raise ValueError("malformed mxc:// URI")
    return server_name, media_id


class MediaService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.config = hs.config.media
        root = Path(self.config.store_path) if self.config.store_path else hs.data_dir / "media"
        self.store: MediaStore = LocalMediaStore(root)
        self._uploaded: dict[str, asyncio.Event] = {}
        self._hash_locks: dict[str, asyncio.Lock] = {}
        self._thumb_locks: dict[str, asyncio.Lock] = {}
        self._touched: dict[str, int] = {}
        self._legacy_frozen_ts: int | None = None

    @cached_property
    def previews(self) -> UrlPreviewer:
        from veche.services.media_preview import UrlPreviewer

        return UrlPreviewer(self.hs)

    @cached_property
    def remote(self) -> RemoteMedia:
        from veche.services.remote_media import RemoteMedia

        return RemoteMedia(self)

    # --- uploads ----------------------------------------------------------------------
    def check_upload_size(self, content_length: int | None) -> None:
        if content_length is not None and content_length > self.config.max_upload_size:
            raise too_large(f"Upload is larger than {self.config.max_upload_size} bytes")

    async def _receive(self, body: StreamReader, content_length: int | None) -> tuple[Path, str, int]:
        """Stream the body to a temp file, hashing as it goes; never holds the whole body."""
        self.check_upload_size(content_length)
        tmp = self.store.new_temp_file()
        digest = hashlib.sha256()
        size = 0
        done = False
        try:
            try:
                with tmp.open("wb") as f:
                    async for chunk in _client_chunks(body, self.hs.config.listen.body_timeout_s):
                        size += len(chunk)
                        if size > self.config.max_upload_size:
                            raise too_large(f"Upload is larger than {self.config.max_upload_size} bytes")
                        digest.update(chunk)
                        f.write(chunk)
            except OSError as e:  # ours, not the client's: name the file (a full disk is logged)
                raise OSError(e.errno, e.strerror, str(tmp)) from e
            if content_length is not None and size != content_length:
                raise MatrixError(400, "M_UNKNOWN", "Body length does not match Content-Length")
            done = True
            if self.hs.metrics is not None:
                self.hs.metrics.MEDIA_UPLOADED_BYTES.inc(size)
            return tmp, digest.hexdigest(), size
        finally:
            if not done:
                tmp.unlink(missing_ok=True)

    def _lock(self, table: dict[str, asyncio.Lock], key: str) -> asyncio.Lock:
        lock = table.get(key)
        if lock is None:
            if len(table) > 10_000:
                for k in [k for k, v in table.items() if not v.locked()]:
                    del table[k]
            lock = table[key] = asyncio.Lock()
        return lock

    async def upload(self, user_id: str, body: StreamReader, content_length: int | None,
                     content_type: str | None, filename: str | None) -> str:
        self.hs.ratelimiter.check("media_upload", user_id)
        tmp, sha, size = await self._receive(body, content_length)
        media_id = secrets.token_urlsafe(18)
        try:
            async with self._lock(self._hash_locks, sha):
                await self.store.put(sha, tmp)
                await self.hs.db.run(store_sql.insert_media, media_id, user_id, now_ms(), sha,
                                     content_type, filename, size)
        finally:
            tmp.unlink(missing_ok=True)
        self._after_upload(media_id, sha, content_type)
        return f"mxc://{self.hs.server_name}/{media_id}"

    async def create(self, user_id: str) -> tuple[str, int]:
        self.hs.ratelimiter.check("media_upload", user_id)
        await self.expire_unused()
        media_id = secrets.token_urlsafe(18)
        now = now_ms()
        expires = now + self.config.unused_expiry_ms
        if not await self.hs.db.run(store_sql.create_pending, media_id, user_id, now, expires,
                                    self.config.max_pending_uploads):
            raise limit_exceeded(self.config.unused_expiry_ms)
        return f"mxc://{self.hs.server_name}/{media_id}", expires

    async def upload_to(self, user_id: str, server_name: str, media_id: str, body: StreamReader,
                        content_length: int | None, content_type: str | None,
                        filename: str | None) -> None:
        """Content for an ID reserved with /create."""
        self.hs.ratelimiter.check("media_upload", user_id)
        row = await self._local_row(server_name, media_id)
        if row is None or (row.sha256 is None and (row.unused_expires_ts or 0) <= now_ms()):
            raise not_found("Unknown media ID")
        if row.user_id != user_id:
            raise forbidden("This media ID was created by another user")
        if row.sha256 is not None:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        tmp, sha, size = await self._receive(body, content_length)
        try:
            async with self._lock(self._hash_locks, sha):
                await self.store.put(sha, tmp)
                filled = await self.hs.db.run(store_sql.fill_pending, media_id, sha, content_type,
                                              filename, size, now_ms())
                if not filled:
                    await self._delete_unreferenced([sha])
        finally:
            tmp.unlink(missing_ok=True)
        if not filled:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        self._after_upload(media_id, sha, content_type)

    def _after_upload(self, media_id: str, sha: str, content_type: str | None) -> None:
        event = self._uploaded.pop(media_id, None)
        if event is not None:
            event.set()
        if _base_type(content_type) in thumbnailer.THUMBNAILABLE:
            self.hs.run_in_background(self._pregenerate(media_id, sha))

    async def _pregenerate(self, media_id: str, sha: str) -> None:
        for width, height, method in thumbnailer.THUMBNAIL_SIZES:
            try:
                await self._generate(media_id, sha, (width, height, method, False))
            except MatrixError:
                return  # not an image, or too big to decode: no thumbnails
            except Exception:
                logger.exception("thumbnailing %s failed", media_id)
                return

    async def expire_unused(self) -> None:
        expired = await self.hs.db.run(store_sql.expired_pending, now_ms())
        if expired:
            await self.hs.db.run(store_sql.delete_media, expired)

    # --- downloads --------------------------------------------------------------------
    async def _local_row(self, server_name: str, media_id: str) -> MediaRow | None:
        if server_name != self.hs.server_name:
            raise not_found("Remote media is not available on this server")
        if not MEDIA_ID.match(media_id):
            raise not_found("Invalid media ID")
        return await self.hs.db.run(store_sql.get_media, media_id)

    async def _frozen_for_legacy(self, row: MediaRow) -> bool:
        if not self.config.freeze_legacy_media:
            return False
        if self._legacy_frozen_ts is None:
            self._legacy_frozen_ts = await self.hs.db.run(store_sql.legacy_freeze_ts)
        return row.created_ts >= self._legacy_frozen_ts

    async def get_media(self, server_name: str, media_id: str, timeout_ms: int | None,
                        legacy: bool = False, allow_remote: bool = True) -> MediaRow:
        """Uploaded, unquarantined media; waits up to timeout_ms for a pending local upload.
        `legacy`: for the unauthenticated routes, which do not serve media newer than the freeze
        (remote media is all newer: it is cached since). `allow_remote`: false only serves
        remote media already cached (the legacy routes' parameter, against request loops)."""
        if server_name != self.hs.server_name:
            if not MEDIA_ID.match(media_id) or not _is_server_name(server_name):
                raise not_found("Invalid media ID")
            if legacy and self.config.freeze_legacy_media:
                raise not_found("Media of other servers is only available from"
                                " /_matrix/client/v1/media")
            wait = min(DEFAULT_WAIT_MS if timeout_ms is None else timeout_ms, MAX_WAIT_MS)
            return await self.remote.get(server_name, media_id, wait, allow_remote)
        row = await self._local_row(server_name, media_id)
        if legacy and row is not None and await self._frozen_for_legacy(row):
            raise not_found("Media uploaded since the server froze the unauthenticated media"
                            " endpoints is only available from /_matrix/client/v1/media")
        if row is not None and row.sha256 is None and (row.unused_expires_ts or 0) > now_ms():
            wait = min(DEFAULT_WAIT_MS if timeout_ms is None else timeout_ms, MAX_WAIT_MS)
            event = self._uploaded.setdefault(media_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), wait / 1000)
            except TimeoutError:
                pass
            row = await self.hs.db.run(store_sql.get_media, media_id)
            if row is not None and row.sha256 is None:
                raise MatrixError(504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet")
        if row is None or row.sha256 is None or row.quarantined:
            raise not_found("Media not found")
        self._touch(media_id)
        if self.hs.metrics is not None:
            self.hs.metrics.MEDIA_SERVED_BYTES.inc(row.size or 0)
        return row

    def _touch(self, media_id: str) -> None:
        now = now_ms()
        if now - self._touched.get(media_id, 0) < TOUCH_EVERY_MS:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()
        self._touched[media_id] = now
        self.hs.run_in_background(self.hs.db.run(store_sql.touch, media_id, now), lasting=True)

    # --- thumbnails -------------------------------------------------------------------
    async def thumbnail(self, server_name: str, media_id: str, width: int, height: int,
                        method: str, animated: bool, timeout_ms: int | None,
                        legacy: bool = False, allow_remote: bool = True) -> ThumbnailRow:
        """A thumbnail, made here: of remote media too, from the cached original (a remote
        original over the size limit answers 502 M_TOO_LARGE, as the spec says)."""
        row = await self.get_media(server_name, media_id, timeout_ms, legacy, allow_remote)
        if _base_type(row.content_type) not in thumbnailer.THUMBNAILABLE:
            raise MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for this content")
        assert row.sha256 is not None
        tw, th, tm = thumbnailer.select_size(width, height, method)
        origin = None if server_name == self.hs.server_name else server_name
        try:
            return await self._generate(media_id, row.sha256, (tw, th, tm, animated), origin)
        except MatrixError as e:
            if origin is not None and e.errcode == "M_TOO_LARGE":
                raise MatrixError(502, "M_TOO_LARGE", e.error) from None
            raise

    async def _generate(self, media_id: str, sha: str, key: tuple[int, int, str, bool],
                        origin: str | None = None) -> ThumbnailRow:
        """`origin`: the server of cached remote media (None: local media)."""
        lock_key = media_id if origin is None else f"{origin}/{media_id}"
        async with self._lock(self._thumb_locks, lock_key):
            for t in await self.hs.db.run(store_sql.thumbnails, media_id, origin):
                if (t.width, t.height, t.method, t.animated) == key and await self.store.exists(t.sha256):
                    return t
            source = self.store.local_path(sha)
            if source is None:
                raise MatrixError(400, "M_UNKNOWN", "Cannot thumbnail from this media store")
            try:
                thumb = await asyncio.to_thread(
                    thumbnailer.make_thumbnail, source, key[0], key[1], key[2], key[3],
                    self.config.max_image_pixels)
            except thumbnailer.ImageTooLarge:
                raise too_large("Image is too large to thumbnail") from None
            except (thumbnailer.NotAnImage, OSError, ValueError, SyntaxError, EOFError):
                raise MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for this content") from None
            tmp = self.store.new_temp_file()
            try:
                tmp.write_bytes(thumb.data)
                t_sha = hashlib.sha256(thumb.data).hexdigest()
                async with self._lock(self._hash_locks, t_sha):
                    await self.store.put(t_sha, tmp)
                    await self.hs.db.run(store_sql.add_thumbnail, media_id, key,
                                         thumb.content_type, t_sha, len(thumb.data), origin)
                    await self._delete_unreferenced([t_sha], locked=True)
            finally:
                tmp.unlink(missing_ok=True)
            return ThumbnailRow(key[0], key[1], key[2], key[3], thumb.content_type, t_sha,
                                len(thumb.data))

    # --- admin ------------------------------------------------------------------------
    async def _delete_unreferenced(self, hashes: list[str], *, locked: bool = False) -> int:
        removed = 0

        def still_unreferenced(txn: Any, sha: str) -> bool:
            return bool(store_sql._unreferenced(txn, {sha}))

        for sha in hashes:
            if locked:
                if await self.hs.db.run(still_unreferenced, sha):
                    await self.store.delete(sha)
                    removed += 1
                continue
            async with self._lock(self._hash_locks, sha):
                if await self.hs.db.run(still_unreferenced, sha):
                    await self.store.delete(sha)
                    removed += 1
        return removed

    async def delete(self, media_ids: list[str]) -> int:
        """Delete media (and thumbnails); a file goes only when nothing references it."""
        hashes = await self.hs.db.run(store_sql.delete_media, media_ids)
        await self._delete_unreferenced(hashes)
        return len(media_ids)

    async def delete_mxc(self, uri: str) -> bool:
        """Delete local media, or drop cached remote media from the cache."""
        server_name, media_id = parse_mxc(uri)
        if server_name != self.hs.server_name:
            if await self.hs.db.run(store_sql.get_remote, server_name, media_id) is None:
                return False
            await self.remote.delete([(server_name, media_id)])
            return True
        if await self.hs.db.run(store_sql.get_media, media_id) is None:
            return False
        await self.delete([media_id])
        return True

    async def quarantine_mxc(self, uri: str, quarantined: bool = True) -> bool:
        server_name, media_id = parse_mxc(uri)
        if server_name != self.hs.server_name:
            return await self.hs.db.run(store_sql.set_remote_quarantined, server_name, media_id,
                                        quarantined)
        return await self.hs.db.run(store_sql.set_quarantined, media_id, quarantined)

    async def purge(self, older_than_ms: int, remote_only: bool) -> int:
        """Delete media not downloaded (or uploaded) for older_than_ms: cached remote media,
        and unless remote_only, local media too."""
        await self.expire_unused()
        before = now_ms() - older_than_ms
        count = await self.remote.purge(before)
        if remote_only:
            return count
        ids = await self.hs.db.run(store_sql.not_accessed_since, before)
        for i in range(0, len(ids), 500):
            await self.delete(ids[i:i + 500])
        return count + len(ids)


async def _client_chunks(body: StreamReader, stall_s: float) -> AsyncIterator[bytes]:
    try:
        while True:
            try:
                async with asyncio.timeout(stall_s):
                    chunk = await body.read(CHUNK)
            except TimeoutError:
                raise MatrixError(408, "M_UNKNOWN", "The upload stalled") from None
            if not chunk:
                return
            yield chunk
    except MatrixError:
        raise
    except Exception as e:  # the client went away or sent a malformed body
        raise MatrixError(400, "M_UNKNOWN", "Incomplete upload body") from e


def _is_server_name(name: str) -> bool:
    """The grammar's, with no empty DNS label (`..` fits the grammar but names nothing)."""
    if not is_valid_server_name(name):
        return False
    return name.startswith("[") or all(name.split(":", 1)[0].split("."))


def _base_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()

"""Media repository metadata (SQL for both dialects); the bytes live in the media store."""

from __future__ import annotations

from dataclasses import dataclass

from veche.storage.database import Txn

_COLUMNS = ("media_id, user_id, created_ts, sha256, content_type, upload_name, size,"
            " unused_expires_ts, quarantined")


@dataclass
class MediaRow:
    media_id: str
    user_id: str | None
    created_ts: int
    sha256: str | None
    content_type: str | None
    upload_name: str | None
    size: int | None
    unused_expires_ts: int | None
    quarantined: bool


@dataclass
class ThumbnailRow:
    width: int
    height: int
    method: str
    animated: bool
    content_type: str
    sha256: str
    size: int


def get_media(txn: Txn, media_id: str) -> MediaRow | None:
    row = txn.fetchone(f"SELECT {_COLUMNS} FROM media WHERE media_id = ?", (media_id,))
    if row is None:
        return None
    return MediaRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8]))


def insert_media(txn: Txn, media_id: str, user_id: str, ts: int, sha256: str,
                 content_type: str | None, upload_name: str | None, size: int) -> None:
    txn.execute(
        "INSERT INTO media (media_id, user_id, created_ts, sha256, content_type, upload_name,"
        " size, last_access_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (media_id, user_id, ts, sha256, content_type, upload_name, size, ts),
    )


def create_pending(txn: Txn, media_id: str, user_id: str, ts: int, expires_ts: int,
                   max_pending: int) -> bool:
    """Reserve a media ID for a later upload; False if the user has too many pending."""
    pending = txn.fetchval(
        "SELECT COUNT(*) FROM media WHERE user_id = ? AND sha256 IS NULL AND unused_expires_ts > ?",
        (user_id, ts),
    )
    if pending >= max_pending:
        return False
    txn.execute(
        "INSERT INTO media (media_id, user_id, created_ts, unused_expires_ts, last_access_ts)"
        " VALUES (?, ?, ?, ?, ?)", (media_id, user_id, ts, expires_ts, ts),
    )
    return True


def fill_pending(txn: Txn, media_id: str, sha256: str, content_type: str | None,
                 upload_name: str | None, size: int, now: int) -> bool:
    """Give a /create'd ID its content; False if it has content already (or expired)."""
    return txn.execute(
        "UPDATE media SET sha256 = ?, content_type = ?, upload_name = ?, size = ?,"
        " unused_expires_ts = NULL, last_access_ts = ?"
        " WHERE media_id = ? AND sha256 IS NULL AND unused_expires_ts > ?",
        (sha256, content_type, upload_name, size, now, media_id, now),
    ) == 1


# Every table whose rows name a file of the content store: a file goes only when none does.
_CONTENT_TABLES = ("media", "media_thumbnails", "remote_media", "remote_media_thumbnails")


def _unreferenced(txn: Txn, hashes: set[str]) -> list[str]:
    return [sha for sha in hashes if not any(
        txn.fetchval(f"SELECT 1 FROM {table} WHERE sha256 = ?", (sha,))
        for table in _CONTENT_TABLES)]


def delete_media(txn: Txn, media_ids: list[str]) -> list[str]:
    """Delete media rows and their thumbnails; the hashes no row references any more."""
    if not media_ids:
        return []
    clause, args = txn.in_list("media_id", media_ids)
    hashes = {r[0] for r in txn.fetchall(
        f"SELECT sha256 FROM media WHERE {clause} AND sha256 IS NOT NULL", args)}
    hashes |= {r[0] for r in txn.fetchall(f"SELECT sha256 FROM media_thumbnails WHERE {clause}", args)}
    txn.execute(f"DELETE FROM media_thumbnails WHERE {clause}", args)
    txn.execute(f"DELETE FROM media WHERE {clause}", args)
    return _unreferenced(txn, hashes)


def expired_pending(txn: Txn, now: int) -> list[str]:
    return [r[0] for r in txn.fetchall(
        "SELECT media_id FROM media WHERE sha256 IS NULL AND unused_expires_ts <= ?", (now,))]


def not_accessed_since(txn: Txn, before_ts: int) -> list[str]:
    return [r[0] for r in txn.fetchall(
        "SELECT media_id FROM media WHERE COALESCE(last_access_ts, created_ts) < ?", (before_ts,))]


def set_quarantined(txn: Txn, media_id: str, quarantined: bool) -> bool:
    return txn.execute("UPDATE media SET quarantined = ? WHERE media_id = ?",
                       (int(quarantined), media_id)) == 1


def touch(txn: Txn, media_id: str, now: int) -> None:
    txn.execute("UPDATE media SET last_access_ts = ? WHERE media_id = ?", (now, media_id))


def _of(origin: str | None, media_id: str) -> tuple[str, str, str, tuple[str, ...]]:
    """(media table, thumbnail table, WHERE clause on the media's key, its arguments) of
    local media (origin None) or of cached remote media."""
    if origin is None:
        return "media", "media_thumbnails", "media_id = ?", (media_id,)
    return ("remote_media", "remote_media_thumbnails",
            "media_origin = ? AND media_id = ?", (origin, media_id))


def thumbnails(txn: Txn, media_id: str, origin: str | None = None) -> list[ThumbnailRow]:
    _, thumbs, where, args = _of(origin, media_id)
    return [ThumbnailRow(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6]) for r in txn.fetchall(
        "SELECT width, height, method, animated, content_type, sha256, size"
        f" FROM {thumbs} WHERE {where}", args)]


def add_thumbnail(txn: Txn, media_id: str, key: tuple[int, int, str, bool], content_type: str,
                  sha256: str, size: int, origin: str | None = None) -> None:
    media, thumbs, where, args = _of(origin, media_id)
    if txn.fetchval(f"SELECT 1 FROM {media} WHERE {where} AND quarantined = 0", args) is None:
        return  # deleted or quarantined meanwhile
    txn.execute(
        f"DELETE FROM {thumbs} WHERE {where} AND width = ? AND height = ?"
        " AND method = ? AND animated = ?", (*args, key[0], key[1], key[2], int(key[3])))
    columns = "media_id" if origin is None else "media_origin, media_id"
    marks = ", ".join("?" * (len(args) + 7))
    txn.execute(
        f"INSERT INTO {thumbs} ({columns}, width, height, method, animated, content_type,"
        f" sha256, size) VALUES ({marks})",
        (*args, key[0], key[1], key[2], int(key[3]), content_type, sha256, size),
    )


def get_preview(txn: Txn, url: str, newer_than: int) -> str | None:
    return txn.fetchval(  # type: ignore[no-any-return]
        "SELECT og_json FROM url_previews WHERE url = ? AND fetched_ts > ?", (url, newer_than))


def put_preview(txn: Txn, url: str, ts: int, og_json: str) -> None:
    txn.execute("DELETE FROM url_previews WHERE url = ?", (url,))
    txn.execute("INSERT INTO url_previews (url, fetched_ts, og_json) VALUES (?, ?, ?)",
                (url, ts, og_json))


def legacy_freeze_ts(txn: Txn) -> int:
    """When the unauthenticated legacy download routes froze (recorded by a migration)."""
    return int(txn.fetchval("SELECT MIN(frozen_ts) FROM legacy_media_freeze") or 0)


# --- the cache of other servers' media ---------------------------------------------------
_REMOTE_COLUMNS = "media_id, created_ts, sha256, content_type, upload_name, size, quarantined"


def get_remote(txn: Txn, origin: str, media_id: str) -> MediaRow | None:
    row = txn.fetchone(f"SELECT {_REMOTE_COLUMNS} FROM remote_media"
                       " WHERE media_origin = ? AND media_id = ?", (origin, media_id))
    if row is None:
        return None
    return MediaRow(row[0], None, row[1], row[2], row[3], row[4], row[5], None, bool(row[6]))


def insert_remote(txn: Txn, origin: str, media_id: str, ts: int, sha256: str,
                  content_type: str | None, upload_name: str | None, size: int) -> None:
    """Cache a fetched file; a row already there (fetched meanwhile) is replaced."""
    txn.execute("DELETE FROM remote_media WHERE media_origin = ? AND media_id = ?",
                (origin, media_id))
    txn.execute(
        "INSERT INTO remote_media (media_origin, media_id, created_ts, sha256, content_type,"
        " upload_name, size, last_access_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (origin, media_id, ts, sha256, content_type, upload_name, size, ts))


def touch_remote(txn: Txn, origin: str, media_id: str, now: int) -> None:
    txn.execute("UPDATE remote_media SET last_access_ts = ? WHERE media_origin = ? AND media_id = ?",
                (now, origin, media_id))


def remote_not_accessed_since(txn: Txn, before_ts: int) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in txn.fetchall(
        "SELECT media_origin, media_id FROM remote_media WHERE last_access_ts < ?", (before_ts,))]


def delete_remote(txn: Txn, keys: list[tuple[str, str]]) -> list[str]:
    """Drop cached remote media and their thumbnails; the hashes nothing references now."""
    hashes: set[str] = set()
    for origin, media_id in keys:
        args = (origin, media_id)
        for table in ("remote_media", "remote_media_thumbnails"):
            where = f"FROM {table} WHERE media_origin = ? AND media_id = ?"
            hashes |= {r[0] for r in txn.fetchall(f"SELECT sha256 {where}", args)}
            txn.execute(f"DELETE {where}", args)
    return _unreferenced(txn, hashes)


def set_remote_quarantined(txn: Txn, origin: str, media_id: str, quarantined: bool) -> bool:
    return txn.execute("UPDATE remote_media SET quarantined = ? WHERE media_origin = ?"
                       " AND media_id = ?", (int(quarantined), origin, media_id)) == 1

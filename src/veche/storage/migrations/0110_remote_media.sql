-- The cache of other servers' media (services/remote_media.py): one row per mxc:// URI
-- fetched, its bytes in the same content store as local media (by sha256), and the
-- thumbnails made of it here.
-- depends: 0007_media 0060_backfill

CREATE TABLE remote_media (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    content_type TEXT,
    upload_name TEXT,
    size BIGINT NOT NULL,
    quarantined INTEGER NOT NULL DEFAULT 0,
    last_access_ts BIGINT NOT NULL,
    PRIMARY KEY (media_origin, media_id)
);
CREATE INDEX remote_media_sha256 ON remote_media (sha256);
CREATE INDEX remote_media_last_access ON remote_media (last_access_ts);

CREATE TABLE remote_media_thumbnails (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    animated INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (media_origin, media_id, width, height, method, animated)
);
CREATE INDEX remote_media_thumbnails_sha256 ON remote_media_thumbnails (sha256);

-- The media repository: one row per media ID; content lives in the media store by sha256.
-- depends: 0004_sync

CREATE TABLE media (
    media_id TEXT PRIMARY KEY,
    user_id TEXT,
    created_ts BIGINT NOT NULL,
    -- NULL until the content is uploaded (asynchronous /create).
    sha256 TEXT,
    content_type TEXT,
    upload_name TEXT,
    size BIGINT,
    -- For /create'd IDs: freed when still empty after this.
    unused_expires_ts BIGINT,
    quarantined INTEGER NOT NULL DEFAULT 0,
    last_access_ts BIGINT
);
CREATE INDEX media_sha256 ON media (sha256);
CREATE INDEX media_user_pending ON media (user_id, unused_expires_ts);

-- Generated thumbnails, also stored by sha256 of their bytes.
CREATE TABLE media_thumbnails (
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    animated INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (media_id, width, height, method, animated)
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);

-- Cached URL previews (the OpenGraph JSON), keyed by URL.
CREATE TABLE url_previews (
    url TEXT PRIMARY KEY,
    fetched_ts BIGINT NOT NULL,
    og_json TEXT NOT NULL
);

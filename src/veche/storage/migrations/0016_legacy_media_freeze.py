"""The moment the deprecated unauthenticated /_matrix/media/v3 download and thumbnail
endpoints froze (spec 1.12, content repository): media uploaded before it stays reachable
there, media uploaded since only through the authenticated /_matrix/client/v1/media ones.
It is when this migration ran: the first start of a version that freezes."""

import time

from yoyo import step

__depends__ = {"0015_openid_sessions"}


def apply(conn) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TABLE legacy_media_freeze (frozen_ts BIGINT NOT NULL)")
    cur.execute(f"INSERT INTO legacy_media_freeze (frozen_ts) VALUES ({int(time.time() * 1000)})")


steps = [step(apply, "DROP TABLE legacy_media_freeze")]

"""On a full disk, sends and uploads answer a clear server-side error (not a bare 500 or a
"400 Incomplete upload body"), the log says "disk full" and where, and everything works
again once there is space."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import POSTGRES_ADMIN_URL, Client
from tests.disk_helpers import fill, tmpfs


@contextlib.contextmanager
def postgres_tables_on(disk: Path, db_url: str) -> Iterator[None]:
    """Move the database's tables and indexes to a tablespace on `disk` (the PostgreSQL
    server runs on this machine), and back afterwards."""
    import psycopg

    where = disk / "pg"
    where.mkdir()
    shutil.chown(where, "postgres", "postgres")
    name = f"veche_full_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE TABLESPACE {name} LOCATION '{where}'")
    try:
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute(f"ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE {name}")
            c.execute(f"ALTER INDEX ALL IN TABLESPACE pg_default SET TABLESPACE {name}")
        yield
    finally:
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute(f"ALTER TABLE ALL IN TABLESPACE {name} SET TABLESPACE pg_default")
            c.execute(f"ALTER INDEX ALL IN TABLESPACE {name} SET TABLESPACE pg_default")
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP TABLESPACE {name}")


async def _send_until_refused(alice: Client, room_id: str) -> tuple[int, Any]:
    # Pages already allocated (SQLite's WAL, PostgreSQL's relation files) take some writes.
    for i in range(2000):
        status, body = await alice.put(f"rooms/{room_id}/send/m.room.message/t{secrets.token_hex(6)}",
                                       {"msgtype": "m.text", "body": f"message {i} " + "x" * 2000})
        if status != 200:
            return status, body
    raise AssertionError("2000 messages fitted on a full disk")


async def test_full_disk_answers_clearly(make_server: Any, server: Any, http: Any) -> None:
    with tmpfs("6m", mode="0711") as disk:
        env = {"VECHE_MEDIA__STORE_PATH": str(disk / "media")}
        if server.backend == "sqlite":
            env["VECHE_DATABASE__URL"] = f"sqlite:///{disk / 'veche.db'}"
        srv = make_server(env, dev=True)
        try:
            alice = await Client(http, srv.base_url).register()
            status, room = await alice.post("createRoom", {})
            assert status == 200
            upload = f"{srv.base_url}/_matrix/media/v3/upload"
            auth = {"Authorization": f"Bearer {alice.access_token}"}
            with (postgres_tables_on(disk, srv.db_url) if srv.backend == "postgres"
                  else contextlib.nullcontext()):
                filler = fill(disk)

                async with http.post(upload, data=os.urandom(512 * 1024), headers=auth) as resp:
                    assert resp.status == 500
                    err = await resp.json()
                assert err["errcode"] == "M_UNKNOWN" and "disk space" in err["error"], err
                assert str(disk / "media") in srv.log() and "disk full" in srv.log()

                status, err = await _send_until_refused(alice, room["room_id"])
                assert status == 500 and err["errcode"] == "M_UNKNOWN", err
                assert "disk space" in err["error"], err
                log = srv.log()
                assert "Traceback" not in log, log
                if srv.backend == "sqlite":
                    assert f"disk full: {disk / 'veche.db'}" in log, log
                else:
                    assert "disk full: the PostgreSQL server's disk" in log, log

                # Space again: everything works.
                filler.unlink()
                status, _ = await alice.put(f"rooms/{room['room_id']}/send/m.room.message/after",
                                            {"msgtype": "m.text", "body": "space again"})
                assert status == 200
                async with http.post(upload, data=b"fits now", headers=auth) as resp:
                    assert resp.status == 200
        finally:
            srv.stop()

"""Backups: `veche backup` while a load sends messages and uploads media, `veche restore`
into a new data directory (and database), and the restored server has every message and
file acknowledged before the backup began, and its users log in."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import PostgresTestDatabase, ServerProcess
from tests.ops_helpers import (
    Acknowledged,
    download,
    login,
    room_messages,
    room_of,
    send_messages,
    upload_media,
)


def veche(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "veche", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def env_of(server_name: str, data_dir: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECHE_")}
    env.update({"VECHE_SERVER_NAME": server_name, "VECHE_DATA_DIR": str(data_dir),
                "VECHE_DATABASE__URL": db_url})
    return env


async def test_backup_under_load_restores_everything(make_server: Any,
                                                     http: aiohttp.ClientSession) -> None:
    srv = make_server({}, dev=True)
    clients, room_id = await room_of(http, srv.base_url, 3)
    acked = Acknowledged()
    stop = asyncio.Event()
    # Some history first, then the load keeps running through the backup.
    await asyncio.gather(*(send_messages(c, room_id, 10, acked) for c in clients),
                         upload_media(clients[0], 3, acked))
    load = [asyncio.ensure_future(send_messages(c, room_id, 100_000, acked, stop))
            for c in clients]
    load.append(asyncio.ensure_future(upload_media(clients[1], 100_000, acked, stop)))
    await asyncio.sleep(0.5)
    before = Acknowledged(dict(acked.messages), dict(acked.media))

    work = Path(tempfile.mkdtemp(prefix="veche-backup-test-"))
    config_file = work / "veche.toml"
    config_file.write_text(f'server_name = "{srv.server_name}"\n[limits]\nsearch_timeout_ms = 9000\n')
    backup_dir = work / "backup"
    done = await asyncio.to_thread(
        veche, "backup", str(backup_dir), "--config", str(config_file),
        env=env_of(srv.server_name, srv.data_dir, srv.db_url))
    sent_during = len(acked.messages) - len(before.messages)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*load)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sent_during > 0  # the backup really ran under load
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["server_name"] == srv.server_name
    assert manifest["database"] == srv.backend
    assert (backup_dir / "config.toml").read_text() == config_file.read_text()
    assert (backup_dir / "signing.key").read_text() == (srv.data_dir / "signing.key").read_text()

    # Restoring over the running server is refused.
    refused = await asyncio.to_thread(
        veche, "restore", str(backup_dir), "--force",
        env=env_of(srv.server_name, srv.data_dir, srv.db_url))
    assert refused.returncode != 0
    assert "stop it" in refused.stderr
    await asyncio.to_thread(srv.stop)

    new_dir = work / "restored"
    pg = PostgresTestDatabase() if srv.backend == "postgres" else None
    new_url = pg.url if pg else f"sqlite:///{new_dir / 'veche.db'}"
    restored = ServerProcess(srv.backend, new_dir, new_url,
                             extra_env={"VECHE_SERVER_NAME": srv.server_name})
    try:
        done = await asyncio.to_thread(veche, "restore", str(backup_dir),
                                       env=env_of(srv.server_name, new_dir, new_url))
        assert done.returncode == 0, done.stdout + done.stderr
        await asyncio.to_thread(restored.start)
        base = restored.base_url
        logged_in = []
        for c in clients:
            status, body = await login(http, base, c.user_id or "")
            assert status == 200, body
            logged_in.append(body["access_token"])
        reader = clients[0]
        reader.base_url, reader.access_token = base, logged_in[0]
        stored = await room_messages(reader, room_id)
        lost = {e: b for e, b in before.messages.items() if stored.get(e) != b}
        assert not lost, f"{len(lost)} of {len(before.messages)} messages missing"
        for mxc, content in before.media.items():
            assert await download(reader, mxc) == (200, content), mxc
        # Nothing the copy holds is half there: whatever it has of the load is intact too.
        for event_id, body in stored.items():
            if event_id in acked.messages:
                assert acked.messages[event_id] == body
        # The restored server takes new messages.
        status, _ = await reader.put(f"rooms/{room_id}/send/m.room.message/restored",
                                     {"msgtype": "m.text", "body": "after the restore"})
        assert status == 200
    finally:
        restored.stop()
        if pg is not None:
            pg.drop()
        shutil.rmtree(work, ignore_errors=True)


def test_restore_refuses_another_server_name(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(
        {"format": 1, "server_name": "old.example", "database": "sqlite"}))
    done = veche("restore", str(tmp_path / "b"),
                 env=env_of("new.example", tmp_path / "data", f"sqlite:///{tmp_path}/x.db"))
    assert done.returncode != 0
    assert "old.example" in done.stderr and "cannot change its name" in done.stderr
    assert not (tmp_path / "x.db").exists()


def test_backup_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "something").write_text("x")
    done = veche("backup", str(tmp_path / "b"),
                 env=env_of("example.org", tmp_path / "data", f"sqlite:///{tmp_path}/x.db"))
    assert done.returncode != 0
    assert "not empty" in done.stderr

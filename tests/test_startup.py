"""A server that cannot start says so in one line: what is wrong, where, and what to do; no
traceback, and a non-zero exit. Data files are readable by the server's user only."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PostgresTestDatabase, free_port
from tests.disk_helpers import tmpfs


def run_serve(env: dict[str, str], port: int) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VECHE_")}
    done = subprocess.run(
        [sys.executable, "-m", "veche", "serve", "--port", str(port), "--log-level", "WARNING"],
        env={**base, **env}, capture_output=True, text=True, timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def assert_one_clear_line(rc: int, output: str, *names: str) -> str:
    assert rc != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    for name in names:
        assert name in lines[0], output
    return lines[0]


@pytest.fixture
def backend_db(server: Any) -> Iterator[tuple[str, Path]]:
    """A fresh database of the session's backend, and a data directory."""
    data_dir = Path(tempfile.mkdtemp(prefix="veche-startup-"))
    pg = PostgresTestDatabase() if server.backend == "postgres" else None
    yield (pg.url if pg else f"sqlite:///{data_dir / 'veche.db'}"), data_dir
    if pg is not None:
        pg.drop()
    subprocess.run(["rm", "-rf", str(data_dir)], check=False)


def test_unsupported_database_url(tmp_path: Path) -> None:
    rc, out = run_serve({"VECHE_DATA_DIR": str(tmp_path), "VECHE_DATABASE__URL": "mysql://db/veche"},
                        free_port())
    line = assert_one_clear_line(rc, out, "mysql")
    assert "sqlite:///" in line and "postgresql://" in line


def test_unreachable_postgres(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    url = f"postgresql://veche:s3cret-pw@127.0.0.1:{closed}/veche"
    rc, out = run_serve({"VECHE_DATA_DIR": str(tmp_path), "VECHE_DATABASE__URL": url}, free_port())
    line = assert_one_clear_line(rc, out, f"127.0.0.1:{closed}", "PostgreSQL")
    assert "s3cret-pw" not in line
    assert "refused" in line.lower()


def test_port_in_use(backend_db: tuple[str, Path]) -> None:
    url, data_dir = backend_db
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, out = run_serve({"VECHE_DATA_DIR": str(data_dir), "VECHE_DATABASE__URL": url}, port)
    line = assert_one_clear_line(rc, out, f"127.0.0.1:{port}")
    assert "already in use" in line.lower() and "--port" in line


def test_corrupt_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "veche.db"
    db.write_bytes(os.urandom(64 * 1024))
    rc, out = run_serve({"VECHE_DATA_DIR": str(tmp_path)}, free_port())
    line = assert_one_clear_line(rc, out, str(db))
    assert "backup" in line


def test_read_only_data_dir(backend_db: tuple[str, Path]) -> None:
    url, _ = backend_db
    with tmpfs(read_only=True) as data_dir:
        db_url = f"sqlite:///{data_dir / 'veche.db'}" if url.startswith("sqlite") else url
        rc, out = run_serve({"VECHE_DATA_DIR": str(data_dir), "VECHE_DATABASE__URL": db_url},
                            free_port())
    line = assert_one_clear_line(rc, out, str(data_dir))
    assert "read-only" in line.lower() and "data_dir" in line


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_files_are_private(make_server: Any, http: Any) -> None:
    from tests.conftest import Client

    srv = make_server({}, dev=True)
    alice = await Client(http, srv.base_url).register()
    async with http.post(f"{srv.base_url}/_matrix/media/v3/upload", data=b"private bytes",
                         headers={"Authorization": f"Bearer {alice.access_token}"}) as resp:
        assert resp.status == 200
    status, _ = await alice.post("createRoom", {})
    assert status == 200
    data = Path(srv.data_dir)
    files = [data / "signing.key"]
    if srv.backend == "sqlite":
        files += [data / "veche.db", data / "veche.db-wal", data / "veche.db-shm"]
    media = data / "media"
    files += [p for p in media.rglob("*") if p.is_file()]
    dirs = [p for p in media.rglob("*") if p.is_dir()] + [media]
    assert len(files) > (4 if srv.backend == "sqlite" else 1)  # the upload is among them
    for f in files:
        assert _mode(f) == 0o600, (f, oct(_mode(f)))
    for d in dirs:
        assert _mode(d) == 0o700, (d, oct(_mode(d)))


def test_open_data_dir_is_made_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    # The database URL is bad, so the server stops right after preparing the data directory.
    rc, out = run_serve({"VECHE_DATA_DIR": str(data_dir), "VECHE_DATABASE__URL": "mysql://db"},
                        free_port())
    assert rc != 0 and _mode(data_dir) == 0o700
    assert f"the data directory {data_dir} was open to other users" in out

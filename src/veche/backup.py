"""`veche backup DIR` and `veche restore DIR`.

A backup directory holds: the database (`veche.db`, a SQLite snapshot, or `veche.pgdump`,
pg_dump's custom format), `media/` (the content-addressed files), the signing keys
(`signing.key`, `old_verify_keys.json`), the config file when one was given, and
`manifest.json` saying what it is. The database is copied first and the media after it:
media files are written before the rows that name them and never change, so every file the
copied database names is in the copy (files uploaded meanwhile come along unnamed, harmless).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from veche import __version__
from veche.config import Config
from veche.datalock import DataDirLock
from veche.keys import KEY_FILE, OLD_KEYS_FILE
from veche.storage import backup as db_copy

MANIFEST = "manifest.json"
FORMAT = 1
SQLITE_FILE = "veche.db"
PG_FILE = "veche.pgdump"


class BackupError(Exception):
    """Cannot back up or restore; the message says why and what to do."""


@dataclass
class Summary:
    database: str
    media_files: int
    media_bytes: int


def _media_root(config: Config) -> Path:
    return Path(config.media.store_path) if config.media.store_path else \
        Path(config.data_dir) / "media"


def _sqlite_path(config: Config) -> Path | None:
    url = config.database_url
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def _copy_media(source: Path, dest: Path) -> tuple[int, int]:
    """Copy the content files (not uploads in progress); a file already there is skipped
    (content-addressed: the same name is the same bytes)."""
    files = size = 0
    if not source.is_dir():
        return 0, 0
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if not path.is_file() or rel.parts[0] == "tmp":
            continue
        target = dest / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, target)
        except FileNotFoundError:
            continue  # deleted meanwhile (media purge)
        files += 1
        size += target.stat().st_size
    return files, size


def backup(config: Config, config_path: str | None, dest: Path) -> Summary:
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: back up into a new directory")
    data_dir = Path(config.data_dir)
    if not (data_dir / KEY_FILE).exists():
        raise BackupError(f"{data_dir / KEY_FILE} does not exist: is data_dir ({data_dir})"
                          " the server's?")
    dest.mkdir(parents=True, exist_ok=True)
    sqlite = _sqlite_path(config)
    try:
        if sqlite is not None:
            if not sqlite.exists():
                raise BackupError(f"the SQLite database {sqlite} does not exist")
            db_copy.sqlite_copy(sqlite, dest / SQLITE_FILE)
            database = "sqlite"
        else:
            db_copy.postgres_dump(config.database_url, dest / PG_FILE)
            database = "postgres"
    except db_copy.DatabaseCopyError as e:
        raise BackupError(str(e)) from None
    files, size = _copy_media(_media_root(config), dest / "media")
    for name in (KEY_FILE, OLD_KEYS_FILE):
        if (data_dir / name).exists():
            shutil.copy2(data_dir / name, dest / name)
    if config_path:
        shutil.copy2(config_path, dest / "config.toml")
    manifest = {"format": FORMAT, "veche_version": __version__, "server_name": config.server_name,
                "created_ts": int(time.time() * 1000), "database": database,
                "config": "config.toml" if config_path else None,
                "media_files": files, "media_bytes": size}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return Summary(database, files, size)


def restore(config: Config, source: Path, *, force: bool = False) -> Summary:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise BackupError(f"{source} is not a veche backup ({MANIFEST}: {e})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source}: backup format {manifest.get('format')} is not known to"
                          f" this version ({__version__})")
    if manifest.get("server_name") != config.server_name:
        raise BackupError(
            f"the backup is of {manifest.get('server_name')}, the configuration says"
            f" server_name = {config.server_name!r}: a server cannot change its name")
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = DataDirLock(data_dir)
    if lock.held_elsewhere():
        raise BackupError(f"a server is running on {data_dir}: stop it before restoring")
    lock.acquire()  # and none starts while the files are put back
    try:
        sqlite = _sqlite_path(config)
        database = manifest.get("database")
        if (database == "sqlite") != (sqlite is not None):
            raise BackupError(
                f"the backup holds a {database} database, the configuration uses"
                f" {'SQLite' if sqlite else 'PostgreSQL'}: restore onto the same kind")
        if not force and (data_dir / KEY_FILE).exists():
            raise BackupError(f"{data_dir} already holds a server (a signing key): restore into"
                              " a new data_dir, or pass --force to replace it")
        try:
            if sqlite is not None:
                db_copy.sqlite_restore(source / SQLITE_FILE, sqlite)
            else:
                db_copy.postgres_restore(source / PG_FILE, config.database_url)
        except db_copy.DatabaseCopyError as e:
            raise BackupError(str(e)) from None
        files, size = _copy_media(source / "media", _media_root(config))
        for name in (KEY_FILE, OLD_KEYS_FILE):
            if (source / name).exists():
                shutil.copy2(source / name, data_dir / name)
                os.chmod(data_dir / name, 0o600)
        return Summary(str(database), files, size)
    finally:
        lock.release()

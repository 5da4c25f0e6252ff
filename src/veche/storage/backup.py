"""Copying the database for `veche backup` and `veche restore`: SQLite through its online
backup API (a consistent snapshot while the server keeps writing), PostgreSQL through
pg_dump and pg_restore."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path


class DatabaseCopyError(Exception):
    """The copy failed; the message says why and what to do."""


def sqlite_copy(source: Path, dest: Path) -> None:
    """Copy the database at `source` into a new file `dest`, consistent as of one moment.

    All pages in one step: stepping would let the server's writes in between restart the
    copy again and again under load; one step reads a single snapshot (in WAL mode the
    server keeps writing meanwhile)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        src.execute("PRAGMA busy_timeout=10000")
        out = sqlite3.connect(dest)
        try:
            src.backup(out, pages=-1)
            out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            problem = out.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            out.close()
    finally:
        src.close()
    if problem != "ok":
        raise DatabaseCopyError(f"the copy of {source} fails SQLite's check: {problem}")


def sqlite_restore(backup: Path, dest: Path) -> None:
    """Replace the database at `dest` (server stopped) by the backup."""
    for stale in (dest, dest.with_name(dest.name + "-wal"), dest.with_name(dest.name + "-shm")):
        stale.unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out)
            out.execute("PRAGMA journal_mode=WAL")
        finally:
            out.close()
    finally:
        src.close()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DatabaseCopyError(
            f"{name} is not installed: install PostgreSQL's client tools (the version of the"
            f" server or newer), or back up the database with {name} yourself (README:"
            " Backups)")
    return path


def _libpq_env(url: str) -> dict[str, str]:
    """The connection as libpq's environment variables: a password in the URL then never
    shows on a command line (where other users' `ps` would see it)."""
    from psycopg.conninfo import conninfo_to_dict

    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
             "dbname": "PGDATABASE", "sslmode": "PGSSLMODE"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in conninfo_to_dict(url).items():
        if key in names and value is not None:
            env[names[key]] = str(value)
    return env


def _run(args: list[str], url: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, env=_libpq_env(url))
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise DatabaseCopyError(f"{Path(args[0]).name} failed: {lines[-1] if lines else done.returncode}")


def postgres_dump(url: str, dest: Path) -> None:
    """pg_dump's custom format: one consistent snapshot, taken while the server runs."""
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
          f"--file={dest}"], url)


def postgres_restore(dump: Path, url: str) -> None:
    """Load the dump into the (existing, preferably empty) database at `url`, replacing the
    objects it holds."""
    dbname = _libpq_env(url).get("PGDATABASE", "")
    _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
          "--exit-on-error", "--single-transaction", f"--dbname={dbname}", str(dump)], url)

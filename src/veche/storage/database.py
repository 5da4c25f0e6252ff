"""One database interface over SQLite and PostgreSQL.

Transactions are plain synchronous functions `fn(txn, *args)` (as in Synapse's
runInteraction): a body cannot yield to the event loop half-way, so no other request sees
or interleaves with its uncommitted writes. SQLite runs them inline on the loop (its calls
take microseconds and it has a single writer anyway); PostgreSQL runs them on a thread
pool over a psycopg connection pool. SQL is written once with `?` placeholders.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


@functools.lru_cache(maxsize=4096)
def _to_pyformat(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class Txn:
    """A transaction: `?` placeholders, tuples for rows, callbacks run after commit."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cur = cursor
        self.dialect = dialect
        self._after: list[Callable[[], None]] = []

    def _sql(self, sql: str) -> str:
        return _to_pyformat(sql) if self.dialect == "postgres" else sql

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        self._cur.execute(self._sql(sql), tuple(args))
        return int(self._cur.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            self._cur.executemany(self._sql(sql), rows)

    def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cur.execute(self._sql(sql), tuple(args))
        return list(self._cur.fetchall())

    def fetchone(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cur.execute(self._sql(sql), tuple(args))
        row = self._cur.fetchone()
        return tuple(row) if row is not None else None

    def fetchval(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self.fetchone(sql, args)
        return row[0] if row else None

    def call_after(self, fn: Callable[[], None]) -> None:
        """Run fn once the transaction has committed (e.g. to update a cache)."""
        self._after.append(fn)

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column IN (?, ?, ...)` for both dialects; an empty list matches nothing."""
        if not values:
            return "1 = 0", []
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)


class Database:
    dialect: str

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    async def fetchall(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await self.run(lambda t: t.fetchall(sql, args))

    async def fetchone(self, sql: str, *args: Any) -> tuple[Any, ...] | None:
        return await self.run(lambda t: t.fetchone(sql, args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.run(lambda t: t.fetchval(sql, args))

    async def execute(self, sql: str, *args: Any) -> int:
        return await self.run(lambda t: t.execute(sql, args))

    def close(self) -> None:
        raise NotImplementedError


class SQLiteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # Another process (the `register-user` CLI) may hold the write lock briefly.
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.Lock()

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            cur = self._conn.cursor()
            txn = Txn(cur, self.dialect)
            cur.execute("BEGIN IMMEDIATE")
            try:
                result = fn(txn, *args)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
        for cb in txn._after:
            cb()
        return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return self.run_sync(fn, *args)

    def close(self) -> None:
        self._conn.close()


class PostgresDatabase(Database):
    dialect = "postgres"

    def __init__(self, url: str, pool_size: int = 8) -> None:
        from psycopg_pool import ConnectionPool

        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=True)
        self._pool.wait(timeout=10)
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="db")

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        with self._pool.connection() as conn:
            with conn.transaction():
                with conn.cursor() as cur:
                    txn = Txn(cur, self.dialect)
                    result = fn(txn, *args)
        for cb in txn._after:
            cb()
        return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self.run_sync(fn, *args))

    def close(self) -> None:
        self._pool.close()
        self._executor.shutdown(wait=False)


def _yoyo_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def apply_migrations(url: str) -> None:
    """Bring the schema up to date; yoyo takes a lock so concurrent workers are safe."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_url(url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        if pending:
            logger.info("applying %d schema migration(s)", len(pending))
            backend.apply_migrations(pending)
    backend.connection.close()


def _schema_is_current(db: Database) -> bool:
    wanted = {p.stem for p in MIGRATIONS_DIR.iterdir() if p.suffix in (".sql", ".py")}
    try:
        applied = db.run_sync(  # type: ignore[attr-defined]
            lambda txn: {r[0] for r in txn.fetchall("SELECT migration_id FROM _yoyo_migration")}
        )
    except Exception:  # no migrations table yet
        return False
    return bool(wanted <= applied)


def ensure_schema(db: Database, url: str) -> None:
    """Apply pending migrations in a child process, so the server never loads yoyo (and what
    it imports) for good: a few MB less resident memory in every server process."""
    if _schema_is_current(db):
        return
    env = {**os.environ, "VECHE_MIGRATE_URL": url}
    done = subprocess.run(
        [sys.executable, "-c", "import os; from veche.storage.database import apply_migrations;"
         " apply_migrations(os.environ['VECHE_MIGRATE_URL'])"],
        env=env, capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"schema migration failed:\n{done.stderr.strip()}")


def open_database(url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = 8) -> Database:
    if url.startswith("sqlite:///"):
        db: Database = SQLiteDatabase(url[len("sqlite:///") :], sqlite_synchronous)
    elif url.startswith(("postgresql://", "postgres://")):
        db = PostgresDatabase(url, pool_size)
    else:
        raise ValueError(f"unsupported database url: {url!r} (use sqlite:/// or postgresql://)")
    ensure_schema(db, url)
    return db

"""One database interface over SQLite and PostgreSQL.

Transactions are plain synchronous functions `fn(txn, *args)` (as in Synapse's
runInteraction): a body cannot yield to the event loop half-way, so no other request sees
or interleaves with its uncommitted writes. SQLite runs them inline on the loop (its calls
take microseconds and it has a single writer anyway); PostgreSQL runs them on a thread
pool over a psycopg connection pool. Known-slow reads go through `run_read` instead, which
keeps them off the loop and bounds their number and time. SQL is written once with `?`
placeholders.
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
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from veche.errors import invalid_param
from veche.storage.readers import QueryTimeout, SQLiteReaders

T = TypeVar("T")
logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _refuse_nul(args: Sequence[Any]) -> None:
    """PostgreSQL text cannot hold U+0000, so neither backend stores or looks one up: the
    same 400 on both, where PostgreSQL alone would fail (JSON columns carry it escaped)."""
    for arg in args:
        if type(arg) is str and "\x00" in arg:
            raise invalid_param("Text with a NUL character (U+0000) is not accepted here")


@functools.lru_cache(maxsize=4096)
def _to_pyformat(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


@functools.lru_cache(maxsize=4096)
def _split_placeholders(sql: str) -> tuple[bytes, ...]:
    return tuple(part.encode() for part in sql.split("?"))


class _Later:
    """The rows of a held read (`Txn.fetchall_later`), once sent."""

    __slots__ = ("_txn", "rows")

    def __init__(self, txn: Txn) -> None:
        self._txn = txn
        self.rows: list[tuple[Any, ...]] | None = None

    def __call__(self) -> list[tuple[Any, ...]]:
        if self.rows is None:
            self._txn.flush()
        if self.rows is None:
            raise RuntimeError("a held read asked for after its transaction failed")
        return self.rows


class Txn:
    """A transaction: `?` placeholders, tuples for rows, callbacks run after commit.

    `write`/`write_many` are for writes whose outcome the caller does not read (no row
    count, no RETURNING). On PostgreSQL they are held and sent with the next statement that
    needs an answer, or with the COMMIT, as one multi-statement query with the values bound
    client-side (one round trip, one result to wait for): a send's dozen inserts cost one
    round trip instead of a dozen. psycopg's pipeline mode would also take one round trip,
    but costs about as much client CPU per statement as a round trip of its own (measured:
    ten inserts and a read, ~650 µs in a pipeline, ~200 µs joined; one read alone ~70 µs).
    Reads can be held too (`fetchall_later`). Order is kept, so a read still sees every
    write before it; a held write that fails raises from that next statement (or from
    `flush`). On SQLite they run at once (no round trips to save)."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cur = cursor
        self.dialect = dialect
        self._after: list[Callable[[], None]] = []
        self._holding = dialect == "postgres"
        # Statements not sent yet: SQL with `?` placeholders, args (or rows, for many), and
        # for a read whose answer is wanted later, where its rows go.
        self._held: list[tuple[str, Any, bool, _Later | None]] = []
        self._literals: Any = None  # psycopg's Transformer, to quote values

    def _sql(self, sql: str) -> str:
        return _to_pyformat(sql) if self.dialect == "postgres" else sql

    def _send(self, sql: str, args: tuple[Any, ...]) -> None:
        """Run a statement whose answer is wanted, after any held ones (in one query)."""
        if not self._held:
            self._cur.execute(self._sql(sql), args)
            return
        held, self._held = self._held, []
        held.append((sql, args, False, None))
        self._run_joined(held)
        while self._cur.nextset():  # to the last statement's result, the one asked for
            pass

    def _run_joined(self, held: list[tuple[str, Any, bool, _Later | None]]) -> None:
        """Send statements as one simple-protocol query with the values quoted in (a query
        of several statements cannot have server-side parameters), and hand the held reads
        their rows. Quoting is psycopg's own, as its ClientCursor does it; splitting on `?`
        is what `_to_pyformat` relies on too (no statement has a `?` of its own)."""
        if self._literals is None:
            from psycopg.adapt import Transformer

            self._literals = Transformer(self._cur)
        quote = self._literals.as_literal
        statements: list[bytes] = []
        reads: list[tuple[int, _Later]] = []
        for sql, args, many, later in held:
            parts = _split_placeholders(sql)
            if later is not None:
                reads.append((len(statements), later))
            for row in args if many else (args,):
                if len(row) != len(parts) - 1:
                    raise TypeError(f"{len(parts) - 1} placeholders, {len(row)} values: {sql}")
                pieces = [parts[0]]
                for value, part in zip(row, parts[1:], strict=True):
                    pieces.append(b"NULL" if value is None else quote(value))
                    pieces.append(part)
                statements.append(b"".join(pieces))
        self._cur.execute(b";\n".join(statements), prepare=False)
        at = 0
        for index, later in reads:
            for _ in range(index - at):
                self._cur.nextset()
            at = index
            later.rows = list(self._cur.fetchall())

    def flush(self) -> None:
        """Send the held statements now (their errors raise here)."""
        if not self._held:
            return
        held, self._held = self._held, []
        if len(held) == 1 and not held[0][2]:
            # One statement (a COMMIT alone): server-side binding, and a prepared statement.
            sql, args, _, later = held[0]
            self._cur.execute(_to_pyformat(sql), args)
            if later is not None:
                later.rows = list(self._cur.fetchall())
            return
        self._run_joined(held)

    def hold(self, sql: str, args: Sequence[Any] = ()) -> None:
        """Queue a statement (a transaction's BEGIN) to go with the next one."""
        self._held.append((sql, tuple(args), False, None))

    def fetchall_later(self, sql: str, args: Sequence[Any] = ()) -> Callable[[], list[tuple[Any, ...]]]:
        """A read whose rows are wanted later: call the result for them. On PostgreSQL it is
        held like a write, so reads that do not depend on each other share one round trip
        (whichever of them is called first sends them all); it sees the writes before it,
        not those after. On SQLite it runs at once."""
        _refuse_nul(args)
        if not self._holding:
            rows = self.fetchall(sql, args)
            return lambda: rows
        later = _Later(self)
        self._held.append((sql, tuple(args), False, later))
        return later

    def write(self, sql: str, args: Sequence[Any] = ()) -> None:
        """A write whose row count is not needed (see the class's docstring)."""
        _refuse_nul(args)
        if self._holding:
            self._held.append((sql, tuple(args), False, None))
        else:
            self._send(sql, tuple(args))

    def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """`executemany` as a held write."""
        rows = [tuple(r) for r in rows]
        for row in rows:
            _refuse_nul(row)
        if not rows:
            return
        if self._holding:
            self._held.append((sql, rows, True, None))
        else:
            self.flush()
            self._cur.executemany(self._sql(sql), rows)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        _refuse_nul(args)
        self._send(sql, tuple(args))
        return int(self._cur.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        for row in rows:
            _refuse_nul(row)
        if rows:
            self.flush()
            self._cur.executemany(self._sql(sql), rows)

    def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        _refuse_nul(args)
        self._send(sql, tuple(args))
        return list(self._cur.fetchall())

    def fetchone(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        _refuse_nul(args)
        self._send(sql, tuple(args))
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
    # Told each transaction's seconds, from waiting for the connection to commit (metrics).
    on_transaction: Callable[[float], None] | None = None

    def pool_stats(self) -> dict[str, int]:
        """The connection pool's counters (psycopg_pool's names); empty without a pool."""
        return {}

    def _timed(self, started: float) -> None:
        if self.on_transaction is not None:
            self.on_transaction(time.perf_counter() - started)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    async def run_read(self, fn: Callable[..., T], *args: Any, timeout: float | None = None
                       ) -> T:
        """A read-only transaction that may be slow: it never holds up other requests, only
        a few run at once, and past `timeout` seconds it is stopped with QueryTimeout."""
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
        # Each persisted event runs in a savepoint (services/events.py), whose journal of
        # the pages it changes outgrows SQLite's 64 KiB in memory: on disk, it cost a temp
        # file created, written and deleted per event. The big, slow reads that might sort
        # past memory go through the readers' connections, which keep the default.
        self._conn.execute("PRAGMA temp_store=MEMORY")
        self._lock = threading.Lock()
        # An in-memory database is private to its connection: its reads stay inline.
        self._readers = SQLiteReaders(path) if path != ":memory:" else None

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
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
        self._timed(started)
        for cb in txn._after:
            cb()
        return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return self.run_sync(fn, *args)

    async def run_read(self, fn: Callable[..., T], *args: Any, timeout: float | None = None
                       ) -> T:
        if self._readers is None:
            return self.run_sync(fn, *args)
        return await self._readers.run(fn, *args, timeout=timeout)

    def close(self) -> None:
        if self._readers is not None:
            self._readers.close()
        self._conn.close()


class PostgresDatabase(Database):
    dialect = "postgres"

    def __init__(self, url: str, pool_size: int = 8, application_name: str | None = None
                 ) -> None:
        from psycopg import Error
        from psycopg.errors import QueryCanceled
        from psycopg.pq import TransactionStatus
        from psycopg_pool import ConnectionPool

        self._error = Error
        self._idle = TransactionStatus.IDLE

        self._canceled = QueryCanceled
        # `application_name`: in a cluster, every session of a process carries its writer's
        # name (cluster/node.py), so the others know it is gone only once none is left.
        named = {"application_name": application_name} if application_name else {}
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=True,
                                    kwargs={"autocommit": True, **named})
        self._pool.wait(timeout=10)
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="db")
        # Slow reads get a quarter of the pool at most: the rest stays free for sends.
        self._slow = ThreadPoolExecutor(max_workers=max(1, pool_size // 4),
                                        thread_name_prefix="db-read")

    def run_sync(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        # The connections are in autocommit mode and the transaction is begun by hand: BEGIN
        # then rides with the first statement, and COMMIT with the last held writes, where
        # psycopg's own transaction would spend a round trip on each.
        started = time.perf_counter()
        with self._pool.connection() as conn:
            with conn.cursor() as cur:
                txn = Txn(cur, self.dialect)
                txn.hold("BEGIN")
                if timeout is not None:
                    txn.hold("SELECT set_config('statement_timeout', ?, true)",
                             (f"{max(1, int(timeout * 1000))}ms",))
                try:
                    result = fn(txn, *args)
                    if txn._held == [("BEGIN", (), False, None)]:
                        txn._held.clear()  # nothing was run: nothing to commit
                    else:
                        txn.hold("COMMIT")
                        txn.flush()
                except BaseException as e:
                    txn._held.clear()
                    if conn.info.transaction_status != self._idle:
                        try:
                            cur.execute("ROLLBACK")
                        except self._error:
                            pass  # a broken connection: the pool drops it
                    if isinstance(e, self._canceled) and timeout is not None:
                        raise QueryTimeout(f"stopped after {timeout:g} s") from None
                    raise
        self._timed(started)
        for cb in txn._after:
            cb()
        return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self.run_sync(fn, *args))

    async def run_read(self, fn: Callable[..., T], *args: Any, timeout: float | None = None
                       ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._slow, lambda: self.run_sync(fn, *args, timeout=timeout))

    def pool_stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats())

    def close(self) -> None:
        self._pool.close()
        self._executor.shutdown(wait=False)
        self._slow.shutdown(wait=False)


def ping(txn: Txn) -> None:
    """The database answers (the readiness check)."""
    txn.fetchval("SELECT 1")


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
        logger.debug("schema migration failed:\n%s", done.stderr.strip())
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DatabaseOpenError(f"schema migration of the database failed: {last}")


class DatabaseOpenError(Exception):
    """The database cannot be opened; the message names it and says what to do."""


def _postgres_reachable(url: str) -> None:
    """Connect once directly: the pool would only report a timeout, not why."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as e:
        try:
            info = conninfo_to_dict(url)
            where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        except psycopg.Error:
            where = "the configured address"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        reason = first.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
        raise DatabaseOpenError(
            f"cannot connect to PostgreSQL at {where}: {reason}; check that it is running and that"
            " [database] url (VECHE_DATABASE__URL) is right") from None


def _sqlite_error(path: str, e: sqlite3.Error) -> DatabaseOpenError:
    code = getattr(e, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_NOTADB or code == sqlite3.SQLITE_CORRUPT:
        advice = "it is not a SQLite database or it is damaged; restore it from a backup or move it aside"
    elif code == sqlite3.SQLITE_FULL:
        advice = "the disk is full; free some space"
    else:
        advice = f"{e}; check that the file and its directory are writable by this user"
    return DatabaseOpenError(f"cannot open the SQLite database {path}: {advice}")


def open_database(url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = 8,
                  application_name: str | None = None) -> Database:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        try:
            db: Database = SQLiteDatabase(path, sqlite_synchronous)
        except sqlite3.Error as e:
            raise _sqlite_error(path, e) from None
    elif url.startswith(("postgresql://", "postgres://")):
        _postgres_reachable(url)
        db = PostgresDatabase(url, pool_size, application_name)
    else:
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise DatabaseOpenError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://")
    ensure_schema(db, url)
    return db

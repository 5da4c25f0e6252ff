"""Heavy reads off the event loop: SQLite runs its transactions inline on the loop, so one slow
query (a broad /search over a big database) would stall every other request. WAL lets readers
run beside the writer on their own connections, each seeing every transaction committed
before it began, so a search right after a send finds it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Few, so heavy reads queue behind each other and leave the CPU to the loop.
READERS = 2
# SQLite calls the progress handler every this many virtual machine steps (about 10 ms of a
# search; each call takes the GIL from the loop, so not much more often).
_PROGRESS_STEPS = 20_000


class QueryTimeout(Exception):
    """A read ran past its time limit and was stopped."""


class SQLiteReaders:
    """A few read-only connections, one per worker thread."""

    def __init__(self, path: str, size: int = READERS) -> None:
        self._path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="db-read")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...], timeout: float | None
             ) -> tuple[T, list[Callable[[], None]]]:
        from veche.storage.database import Txn

        conn = self._conn()
        if timeout is not None:
            deadline = time.monotonic() + timeout
            conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
        cur = conn.cursor()
        txn = Txn(cur, "sqlite")
        try:
            cur.execute("BEGIN")
            return fn(txn, *args), txn._after
        except sqlite3.OperationalError as e:
            if timeout is not None and "interrupted" in str(e):
                raise QueryTimeout(f"stopped after {timeout:g} s") from None
            raise
        finally:
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            conn.set_progress_handler(None, 0)

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        loop = asyncio.get_running_loop()
        result, after = await loop.run_in_executor(self._executor, self._run, fn, args, timeout)
        for cb in after:  # on the loop, like the writer's, so caches need no locks
            cb()
        return result

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.interrupt()  # a running search must not hold up shutdown
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

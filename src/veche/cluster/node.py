"""One process among many sharing a PostgreSQL database and a NATS bus.

What makes several processes one server:
- positions: a shared sequence plus each writer's safe position on the bus (positions.py);
- wake-ups: the notifier publishes what it wakes, every process wakes its own waiters;
- caches: every in-process cache that can go stale is forgotten everywhere (caches.py);
- one writer per room: a transaction lock per room around persisting its events;
- background work exactly once: PostgreSQL advisory locks held by the session of this
  process's own connection. When a process dies its session ends, the lock is free, and
  another process takes it within LEASE_POLL_S.

The connection here also identifies the writer: its application_name is WRITER_PREFIX plus
the worker name, so a writer that stopped talking on the bus is known dead once its
session is gone from pg_stat_activity.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from veche.cluster.bus import Bus
from veche.cluster.positions import ClusterStreamIdGenerator

if TYPE_CHECKING:
    from veche.config import Config
    from veche.server import HomeServer
    from veche.storage.database import Txn

logger = logging.getLogger(__name__)

WRITER_PREFIX = "veche-writer:"
SEQUENCE = "veche_stream_seq"
HEARTBEAT_S = 1.0
# A writer silent this long is looked for among the database's sessions (then forgotten if
# it has none: its transactions ended with it).
SILENT_S = 2.5
LEASE_POLL_S = 2.0
# How long a starting process listens for the others' positions before it serves.
JOIN_WAIT_S = 2.5
# How long a /sync with a token from a process further ahead waits for this one to catch up
# (past SILENT_S + HEARTBEAT_S: the others wait that long for a writer that died).
CATCH_UP_S = 5.0


# The processes of the cluster that have a database session: (SQL, args).
_WRITERS = ("SELECT DISTINCT application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE %s",
            (WRITER_PREFIX + "%",))


def worker_name(config: Config) -> str:
    """`veche serve` always names its worker; other commands (register-user, …) are
    writers for a moment, under a name of their own."""
    return config.bus.worker_name or re.sub(
        r"[^A-Za-z0-9._-]", "-", f"cli-{socket.gethostname()}-{os.getpid()}")


def session_name(config: Config) -> str:
    """The application_name of this process's pool sessions (its own connection here has
    the name without "/db"). A process killed in the middle of a query leaves its session
    running the query to its end, a COMMIT included: only once none of its sessions is left
    may the others read past the positions it held (else a position committed late would
    be stepped over for good)."""
    return WRITER_PREFIX + worker_name(config) + "/db"


def _worker_names(rows: list[tuple[Any, ...]]) -> set[str]:
    return {r[0][len(WRITER_PREFIX):].split("/", 1)[0] for r in rows}


def running_workers(database_url: str) -> set[str]:
    """The names of the `veche serve` processes on this database now (for commands that
    must run while none does)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(*_WRITERS).fetchall()
    return _worker_names(rows)


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for a name (stable across processes and versions)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


class Cluster:
    def __init__(self, hs: HomeServer, last: int) -> None:
        self.hs = hs
        cfg = hs.config.bus
        self.worker = worker_name(hs.config)
        self.bus = Bus(cfg.url, hs.server_name, self.worker)
        self._conn = self._connect()
        self._conn_lock = threading.Lock()
        with self._conn_lock, self._conn.transaction():
            # One process at a time sets the sequence up (the first on a database that a
            # single process used before starts it above the positions already stored).
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("veche-sequence"),))
            self._conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE}")
            self._conn.execute(
                f"SELECT setval('{SEQUENCE}', GREATEST((SELECT last_value FROM {SEQUENCE}), %s))",
                (max(last, 1),))
            start = self._conn.execute(f"SELECT last_value FROM {SEQUENCE}").fetchone()[0]
        self.stream = ClusterStreamIdGenerator(int(start), self._nextval, self._announce)
        self._heard: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._leases: dict[str, Callable[[], Awaitable[None]]] = {}
        self.held: set[str] = set()
        self._started: set[str] = set()
        self._handlers: dict[str, Callable[..., object]] = {}

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.hs.config.database_url, autocommit=True,
                               application_name=WRITER_PREFIX + self.worker)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """On this process's own connection; a lost one (PostgreSQL restarted, failed over)
        is opened again once. Its session's leases are gone with it: they are taken again,
        by whichever process gets them first."""
        import psycopg

        with self._conn_lock:
            try:
                return list(self._conn.execute(sql, args).fetchall())
            except psycopg.OperationalError:
                if not self._conn.closed:
                    raise
                logger.warning("lost the cluster's database connection; opening it again")
                self._conn = self._connect()
                if self.held:
                    logger.warning("leases %s lost with it", ", ".join(sorted(self.held)))
                    self.held.clear()
                return list(self._conn.execute(sql, args).fetchall())

    # --- positions --------------------------------------------------------------------
    def _nextval(self) -> int:
        return int(self._query(f"SELECT nextval('{SEQUENCE}')")[0][0])

    def _announce(self, safe: int, seen: int) -> None:
        self.publish("pos", {"s": safe, "l": seen})

    def _on_pos(self, writer: str, body: dict[str, Any]) -> None:
        new = writer not in self._heard
        self._heard[writer] = time.monotonic()
        if new:
            logger.info("writer %s on the bus", writer)
        self.stream.heard(writer, int(body["s"]), int(body["l"]))

    def _on_bye(self, writer: str, body: dict[str, Any]) -> None:
        self._gone(writer)

    def _gone(self, writer: str) -> None:
        if self._heard.pop(writer, None) is not None:
            logger.info("writer %s gone", writer)
        self.stream.forget(writer)

    def live_writers(self) -> set[str]:
        return _worker_names(self._query(*_WRITERS)) - {self.worker}

    # --- the bus ----------------------------------------------------------------------
    def publish(self, kind: str, body: dict[str, Any]) -> None:
        """Publish from any thread (commit callbacks run on the database's threads)."""
        loop = self._loop
        if loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self.bus.publish(kind, body)
        else:
            loop.call_soon_threadsafe(self.bus.publish, kind, body)

    def handle(self, name: str, fn: Callable[..., object]) -> None:
        """Run `fn(*args)` when another process calls `share(name, *args)`."""
        self._handlers[name] = fn

    def share(self, name: str, *args: Any) -> None:
        self.publish("inval", {"n": name, "a": list(args)})

    def _on_inval(self, writer: str, body: dict[str, Any]) -> None:
        fn = self._handlers.get(body.get("n", ""))
        if fn is not None:
            fn(*body.get("a", []))

    def _on_notify(self, writer: str, body: dict[str, Any]) -> None:
        self.hs.notifier.notify_local(body["k"], int(body["p"]))

    def _publish_notify(self, keys: list[str], position: int) -> None:
        self.publish("notify", {"k": keys, "p": position})

    async def start(self) -> None:
        from veche.cluster import caches, outbox

        self._loop = asyncio.get_running_loop()
        expected = self.live_writers()
        await self.bus.connect({"pos": self._on_pos, "bye": self._on_bye,
                                "notify": self._on_notify, "inval": self._on_inval},
                               self._resend)
        self._announce(*self.stream.announcement())
        await self.bus.flush()
        # Hear every live writer (they announce once a second) before serving: until then
        # this process cannot know what they have in flight. Waiting also lets every other
        # process hear of this one before it writes anything.
        began = time.monotonic()
        while time.monotonic() - began < JOIN_WAIT_S:
            await asyncio.sleep(0.1)
            if expected <= set(self._heard) and time.monotonic() - began > HEARTBEAT_S + 0.2:
                break
        for writer in expected - set(self._heard):
            logger.warning("writer %s has a database session but is silent on the bus", writer)
        self.stream.refresh()
        self.hs.notifier.publish = self._publish_notify
        caches.share_caches(self.hs, self)
        outbox.install(self.hs, self)
        self._tasks.append(asyncio.ensure_future(self._heartbeat()))
        self._tasks.append(asyncio.ensure_future(self._leases_loop()))
        logger.info("worker %s joined the bus at %s (stream at %d)", self.worker, self.bus.url,
                    self.stream.current)

    async def _resend(self) -> None:
        self._announce(*self.stream.announcement())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                self._announce(*self.stream.announcement())
                silent = [w for w, t in self._heard.items() if time.monotonic() - t > SILENT_S]
                if silent:
                    live = await asyncio.to_thread(self.live_writers)
                    for writer in silent:
                        if writer not in live:
                            self._gone(writer)
            except Exception:
                logger.exception("cluster heartbeat")

    async def caught_up(self, position: int, timeout: float = CATCH_UP_S) -> bool:
        """Wait until this process reads up to `position` (a sync token another process
        handed out, ahead of this one by a moment, or by the time it takes to notice a dead
        writer); False if it did not within `timeout`."""
        if self.stream.current >= position:
            return True
        reached = asyncio.get_running_loop().create_future()

        def advanced(current: int) -> None:
            if current >= position and not reached.done():
                reached.set_result(None)

        self.stream.on_advance(advanced)
        try:
            await asyncio.wait_for(reached, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self.stream.remove_listener(advanced)

    # --- one writer per room ----------------------------------------------------------
    def lock_room(self, txn: Txn, room_id: str, count: int) -> list[int]:
        """Inside the transaction that persists the room's events: another process's
        transaction on the same room waits here until this one commits. Returns the
        positions to persist them at, taken under the lock: a room's stream order is then
        the order its events joined the graph. (The positions the caller took before stay
        in flight until it commits, holding readers below these.)"""
        txn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("room:" + room_id),))
        rows = txn.fetchall(f"SELECT nextval('{SEQUENCE}') FROM generate_series(1, ?)", (count,))
        positions = sorted(int(r[0]) for r in rows)
        self.stream.saw(positions[-1])
        return positions

    # --- leases -----------------------------------------------------------------------
    def lease(self, name: str, start: Callable[[], Awaitable[None]]) -> None:
        """Run `start()` on exactly one process at a time: this one, once it holds the lease
        (and from then on, until it dies)."""
        self._leases[name] = start

    def holds(self, name: str) -> bool:
        return name in self.held

    async def _leases_loop(self) -> None:
        while True:
            for name, start in list(self._leases.items()):
                if name in self.held:
                    continue
                try:
                    got = await asyncio.to_thread(self._try_lock, name)
                except Exception:
                    logger.exception("lease %s", name)
                    continue
                if got:
                    self.held.add(name)
                    logger.info("worker %s holds lease %s", self.worker, name)
                    if name in self._started:
                        continue  # taken again after a lost connection: still running
                    self._started.add(name)
                    try:
                        await start()
                    except Exception:
                        logger.exception("starting %s", name)
            await asyncio.sleep(LEASE_POLL_S)

    def _try_lock(self, name: str) -> bool:
        rows = self._query("SELECT pg_try_advisory_lock(%s)", (lock_key("lease:" + name),))
        return bool(rows and rows[0][0])

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.publish("bye", {})
        await self.bus.close()
        with self._conn_lock:
            self._conn.close()

"""Prometheus metrics ([metrics] enabled): served on their own port, never on the client one.

Imported only when metrics are on, so a server without them loads no prometheus_client. The
series live in prometheus_client's default registry, which also carries its process
collector (CPU seconds, resident memory, open file descriptors) and the Python GC's.
Gauges that are a count of something elsewhere (/sync waiters, the database pool, the
federation queue) are read when scraped, not kept up to date on every change.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from veche.http.base import Handler
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

# Long-polling /sync lands in the top buckets by design: its latency is its timeout.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TXN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

REQUESTS = Counter("veche_http_requests", "HTTP requests answered, by route pattern and status",
                   ["method", "endpoint", "status"])
REQUEST_SECONDS = Histogram("veche_http_request_duration_seconds",
                            "Time from a request's head to its answer, by route pattern",
                            ["method", "endpoint"], buckets=_LATENCY_BUCKETS)
IN_FLIGHT = Gauge("veche_http_requests_in_flight", "Requests being handled now")
EVENTS_PERSISTED = Counter("veche_events_persisted", "Events stored, by where they were made",
                           ["origin"])
DB_TXN_SECONDS = Histogram("veche_db_transaction_duration_seconds",
                           "Database transactions, from asking for a connection to commit",
                           buckets=_TXN_BUCKETS)
MEDIA_UPLOADED_BYTES = Counter("veche_media_uploaded_bytes", "Bytes of media uploaded by users")
MEDIA_SERVED_BYTES = Counter("veche_media_served_bytes", "Bytes of local media handed out for download")
SYNC_WAITERS = Gauge("veche_sync_waiters", "Long-polling /sync requests parked waiting for news")
DB_POOL_SIZE = Gauge("veche_db_pool_connections", "Database connections open (PostgreSQL pool)")
DB_POOL_AVAILABLE = Gauge("veche_db_pool_available", "Idle database connections in the pool")
DB_POOL_WAITING = Gauge("veche_db_pool_waiting", "Transactions waiting for a pool connection")
FEDERATION_QUEUE = Gauge("veche_federation_queue_depth",
                         "PDUs and EDUs queued for another server, per destination",
                         ["destination"])


def endpoint_of(request: web.Request) -> str:
    """The route's pattern (`/_matrix/client/v3/rooms/{room_id}/send/...`), never the raw
    path: one series per endpoint, however many rooms and users there are."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "unmatched"
    return str(resource.canonical)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 499  # the client went away before the answer (nginx's code for it)
    IN_FLIGHT.inc()
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    except Exception:
        status = 500
        raise
    finally:
        IN_FLIGHT.dec()
        endpoint = endpoint_of(request)
        REQUESTS.labels(request.method, endpoint, str(status)).inc()
        REQUEST_SECONDS.labels(request.method, endpoint).observe(time.perf_counter() - started)


def observe_transaction(seconds: float) -> None:
    DB_TXN_SECONDS.observe(seconds)


class MetricsServer:
    """The /metrics endpoint of one homeserver, on [metrics] bind_address:port."""

    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._destinations: set[str] = set()

    def app(self) -> web.Application:
        app = web.Application(handler_args={"access_log": None})
        app.router.add_get("/metrics", self._scrape)
        return app

    async def _refresh(self) -> None:
        hs = self.hs
        SYNC_WAITERS.set(hs.notifier.waiting)
        stats: dict[str, Any] = hs.db.pool_stats()
        if stats:
            DB_POOL_SIZE.set(stats.get("pool_size", 0))
            DB_POOL_AVAILABLE.set(stats.get("pool_available", 0))
            DB_POOL_WAITING.set(stats.get("requests_waiting", 0))
        if hs.config.federation.enabled:
            depths = await hs.federation_sender.queue_depths()
            for gone in self._destinations - depths.keys():
                FEDERATION_QUEUE.remove(gone)
            for destination, depth in depths.items():
                FEDERATION_QUEUE.labels(destination).set(depth)
            self._destinations = set(depths)

    async def _scrape(self, request: web.Request) -> web.Response:
        try:
            await self._refresh()
        except Exception:  # a scrape still shows what it can
            logger.exception("refreshing the metrics failed")
        resp = web.Response(body=generate_latest(REGISTRY))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

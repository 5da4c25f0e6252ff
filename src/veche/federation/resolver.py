"""Resolving a server name to where to connect (server-server API "Resolving server names"):
IP literals, explicit ports, /.well-known/matrix/server delegation (cached by its
Cache-Control, failures cached with exponential back-off), SRV `_matrix-fed._tcp` then the
deprecated `_matrix._tcp`, and port 8448."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from veche.core.server_discovery import (
    DEFAULT_FEDERATION_PORT,
    ServerName,
    SrvRecord,
    Target,
    cache_period_s,
    error_period_s,
    order_srv,
    parse_name,
    parse_well_known,
)

logger = logging.getLogger(__name__)

# (status, body, Cache-Control) of GET https://<host>/.well-known/matrix/server; raises
# OSError / aiohttp errors when nothing came back.
WellKnownFetcher = Callable[[str], Awaitable[tuple[int, bytes, str | None]]]
SrvLookup = Callable[[str], Awaitable[list[SrvRecord]]]
MAX_CACHED_HOSTS = 10_000


@dataclass
class _Cached:
    expires: float
    delegated: str | None
    failures: int


class ServerResolver:
    def __init__(self, fetch_well_known: WellKnownFetcher, lookup_srv: SrvLookup, *,
                 federation_port: int = DEFAULT_FEDERATION_PORT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch_well_known
        self._lookup_srv = lookup_srv
        self.federation_port = federation_port
        self._clock = clock
        self._well_known: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Future[str | None]] = {}

    async def resolve(self, server_name: str) -> list[Target]:
        """Targets to try in order; raises InvalidIdentifier for a bad server name."""
        name = parse_name(server_name)
        if name.is_ip or name.port is not None:
            return [Target(name.host, name.port or self.federation_port, server_name, name.host)]
        delegated = await self.well_known(name.host)
        if delegated is not None:
            d = parse_name(delegated)
            if d.is_ip or d.port is not None:
                return [Target(d.host, d.port or self.federation_port, delegated, d.host)]
            return await self._srv_or_default(d)
        return await self._srv_or_default(name)

    async def _srv_or_default(self, name: ServerName) -> list[Target]:
        for service in ("_matrix-fed._tcp", "_matrix._tcp"):
            records = order_srv(await self._lookup_srv(f"{service}.{name.host}"))
            if records:
                return [Target(r.target, r.port, name.host, name.host) for r in records]
        return [Target(name.host, self.federation_port, name.host, name.host)]

    async def well_known(self, host: str) -> str | None:
        """The server name `host` delegates to, if any (cached)."""
        now = self._clock()
        cached = self._well_known.get(host)
        if cached is not None and cached.expires > now:
            return cached.delegated
        inflight = self._inflight.get(host)
        if inflight is not None:
            return await asyncio.shield(inflight)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._inflight[host] = future
        try:
            result = await self._fetch_well_known(host, cached)
            future.set_result(result)
            return result
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._inflight[host]

    async def _fetch_well_known(self, host: str, previous: _Cached | None) -> str | None:
        delegated: str | None = None
        period: float
        try:
            status, body, cache_control = await self._fetch(host)
        except Exception as e:  # unreachable, TLS failure, too many redirects, timeout ...
            logger.debug(".well-known of %s failed: %s", host, e)
            status, body, cache_control = 0, b"", None
        if status == 200:
            delegated = parse_well_known(body)
        if delegated is not None:
            failures = 0
            period = cache_period_s(cache_control)
        else:
            failures = (previous.failures if previous else 0) + 1
            period = error_period_s(failures)
        if len(self._well_known) >= MAX_CACHED_HOSTS:
            now = self._clock()
            self._well_known = {h: c for h, c in self._well_known.items() if c.expires > now}
            if len(self._well_known) >= MAX_CACHED_HOSTS:
                self._well_known.clear()
        self._well_known[host] = _Cached(self._clock() + period, delegated, failures)
        return delegated

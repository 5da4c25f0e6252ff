"""DNS for federation: SRV records (dnspython) and, where a resolver is given (tests on a
local DNS server), A/AAAA records for aiohttp too. Without one, addresses come from the
system (getaddrinfo, so /etc/hosts counts) and SRV from the system's configured servers."""

from __future__ import annotations

import logging
import socket

import dns.asyncresolver
import dns.exception
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from veche.core.server_discovery import SrvRecord

logger = logging.getLogger(__name__)


def system_resolver() -> dns.asyncresolver.Resolver | None:
    try:
        resolver = dns.asyncresolver.Resolver()
    except (dns.resolver.NoResolverConfiguration, OSError):
        logger.warning("no DNS configuration: SRV records will not be looked up")
        return None
    resolver.cache = dns.resolver.Cache()
    resolver.lifetime = 10.0
    return resolver


async def lookup_srv(resolver: dns.asyncresolver.Resolver | None, name: str) -> list[SrvRecord]:
    """The SRV records of `name`; none when it has none or DNS fails (the spec then moves on)."""
    if resolver is None:
        return []
    try:
        answer = await resolver.resolve(name, "SRV", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
        return []
    except dns.exception.DNSException as e:
        logger.info("SRV lookup for %s failed: %s", name, e)
        return []
    return [SrvRecord(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
            for r in answer]


class DnsPythonResolver(AbstractResolver):
    """aiohttp resolver asking a given DNS resolver for AAAA and A records."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self._resolver = resolver

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results: list[ResolveResult] = []
        kinds = [("AAAA", socket.AF_INET6), ("A", socket.AF_INET)]
        for rdtype, fam in kinds:
            if family not in (socket.AF_UNSPEC, fam):
                continue
            try:
                answer = await self._resolver.resolve(host, rdtype, search=False)
            except dns.exception.DNSException:
                continue
            results += [ResolveResult(hostname=host, host=r.address, port=port, family=fam,
                                      proto=0, flags=socket.AI_NUMERICHOST) for r in answer]
        if not results:
            raise OSError(f"{host}: no address found")
        return results

    async def close(self) -> None:
        return None

"""Outbound HTTP on users' behalf (URL previews, push gateways) with SSRF protection.

Every hop is checked: an IP literal before anything is sent, a host name by resolving it;
the connector only ever connects to addresses that pass the same filter (so a name that
re-resolves elsewhere — DNS rebinding — cannot slip through), and the connected peer is
checked once more.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressPolicy:
    """Which IP addresses the server may connect to when it fetches on a user's behalf."""

    def __init__(self, allowlist: list[str], denylist: list[str]) -> None:
        self.allow: list[IPNetwork] = [ipaddress.ip_network(c, strict=False) for c in allowlist]
        self.deny: list[IPNetwork] = [ipaddress.ip_network(c, strict=False) for c in denylist]

    def allowed(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.deny if net.version == ip.version):
            return False
        if any(ip in net for net in self.allow if net.version == ip.version):
            return True
        # Private, loopback, link-local, reserved, unspecified, shared and documentation ranges
        # are all "not global"; multicast can be global but is never a web server.
        return ip.is_global and not ip.is_multicast


class BlockedAddress(OSError):
    pass


class FilteringResolver(AbstractResolver):
    """Resolves with getaddrinfo and drops every address the policy refuses."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if self.policy.allowed(ipaddress.ip_address(r["host"]))]
        if not kept:
            raise BlockedAddress(f"{host} resolves to no allowed address")
        return kept

    async def close(self) -> None:
        await self._inner.close()


class FilteringConnector(aiohttp.TCPConnector):
    """Connects only to allowed addresses — IP literals skip the resolver, so the address list
    is filtered again right before connecting — and checks the connected peer."""

    def __init__(self, policy: AddressPolicy, inner_resolver: AbstractResolver | None = None,
                 **kwargs: Any) -> None:
        super().__init__(resolver=FilteringResolver(policy, inner_resolver), **kwargs)
        self.policy = policy

    async def _wrap_create_connection(self, *args: Any, addr_infos: list[Any],
                                      **kwargs: Any) -> Any:
        addr_infos = [a for a in addr_infos if self.policy.allowed(ipaddress.ip_address(a[4][0]))]
        if not addr_infos:
            raise BlockedAddress("no allowed address to connect to")
        transport, proto = await super()._wrap_create_connection(*args, addr_infos=addr_infos, **kwargs)
        peer = transport.get_extra_info("peername")
        if not peer or not self.policy.allowed(ipaddress.ip_address(peer[0])):
            transport.close()
            raise BlockedAddress("connected to a refused address")
        return transport, proto

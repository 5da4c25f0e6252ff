"""The pure parts of resolving a server name (server-server API "Resolving server names"):
server-name parsing, the /.well-known/matrix/server body and its cache period, and the order
in which SRV records are tried (RFC 2782)."""

from __future__ import annotations

import ipaddress
import json
import random
import re
from dataclasses import dataclass

from veche.core.identifiers import InvalidIdentifier, parse_server_name

DEFAULT_FEDERATION_PORT = 8448
# Spec: cache .well-known answers by their Cache-Control, 24 h when it says nothing, never
# more than 48 h; errors for up to an hour, backing off exponentially on repeated failures.
WELL_KNOWN_DEFAULT_S = 24 * 3600
WELL_KNOWN_MAX_S = 48 * 3600
WELL_KNOWN_ERROR_FIRST_S = 120
WELL_KNOWN_ERROR_MAX_S = 3600
WELL_KNOWN_MAX_BYTES = 50 * 1024


@dataclass(frozen=True)
class ServerName:
    host: str  # an IPv6 literal without brackets
    port: int | None
    is_ip: bool

    @property
    def host_for_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


def parse_name(server_name: str) -> ServerName:
    """Raise InvalidIdentifier for anything that is not host[:port] with a port in 1-65535."""
    host, port = parse_server_name(server_name)
    if port is not None and not 0 < port <= 65535:
        raise InvalidIdentifier(f"bad port in {server_name!r}")
    if host.startswith("["):
        return ServerName(host[1:-1], port, True)
    try:
        ipaddress.IPv4Address(host)
        return ServerName(host, port, True)
    except ValueError:
        return ServerName(host, port, False)


@dataclass(frozen=True)
class Target:
    """Where and how to connect for a server name.

    `connect_host` is what to resolve (or an IP literal) and connect to on `port`; the
    request carries `Host: host_header`; the certificate must be valid for `tls_name`, which
    is also sent as SNI unless it is an IP address.
    """

    connect_host: str
    port: int
    host_header: str
    tls_name: str


def parse_well_known(body: bytes) -> str | None:
    """The delegated server name in a /.well-known/matrix/server body, or None if invalid."""
    try:
        data = json.loads(body)
    except ValueError:  # includes undecodable bytes
        return None
    if not isinstance(data, dict):
        return None
    delegated = data.get("m.server")
    if not isinstance(delegated, str):
        return None
    try:
        parse_name(delegated)
    except InvalidIdentifier:
        return None
    return delegated


_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


def cache_period_s(cache_control: str | None) -> int:
    """How long a successful .well-known answer is kept, from its Cache-Control header."""
    if cache_control:
        directives = cache_control.lower()
        if "no-store" in directives:
            return 0
        match = _MAX_AGE.search(cache_control)
        if match:
            return min(int(match.group(1)), WELL_KNOWN_MAX_S)
    return WELL_KNOWN_DEFAULT_S


def error_period_s(failures: int) -> int:
    """How long the failure of the `failures`-th .well-known attempt in a row is kept."""
    return min(WELL_KNOWN_ERROR_FIRST_S << min(max(failures - 1, 0), 32), WELL_KNOWN_ERROR_MAX_S)


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


def order_srv(records: list[SrvRecord], rng: random.Random | None = None) -> list[SrvRecord]:
    """The records in the order to try them: ascending priority, and within one priority a
    weighted random order (RFC 2782). A lone "." target means the service is not offered."""
    if len(records) == 1 and records[0].target in (".", ""):
        return []
    rng = rng or random.Random()
    ordered: list[SrvRecord] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority and r.target not in (".", "")]
        # Zero-weight records first, so they get a small chance of being picked (RFC 2782).
        group.sort(key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total)
            running = 0
            for i, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(i))
                    break
    return ordered

"""Server ACLs (`m.room.server_acl`, client-server API "Server Access Control Lists"): may a
server take part in a room?

The lists hold case-insensitive glob patterns (appendices "Glob-style matching": `*` any run
of characters, `?` exactly one) matched against the server name without its port.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

SERVER_ACL = "m.room.server_acl"


def host_of(server_name: str) -> str:
    """The server name without its port: ports are never considered by ACLs."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end >= 0 else server_name
    return server_name.split(":", 1)[0]


def is_ip_literal(host: str) -> bool:
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(literal)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    parts = ["(?s)"]
    for c in pattern:
        parts.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
    return re.compile("".join(parts), re.IGNORECASE)


def _patterns(value: object) -> list[str]:
    return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []


def server_allowed(server_name: str, acl_content: Mapping[str, Any] | None) -> bool:
    """The spec's order: no ACL allows; an IP literal is denied when `allow_ip_literals` is
    false; a `deny` match denies; an `allow` match allows; anything else is denied."""
    if acl_content is None:
        return True
    host = host_of(server_name)
    allow_ip = acl_content.get("allow_ip_literals")
    if allow_ip is False and is_ip_literal(host):
        return False
    if any(_glob(p).fullmatch(host) for p in _patterns(acl_content.get("deny"))):
        return False
    return any(_glob(p).fullmatch(host) for p in _patterns(acl_content.get("allow")))

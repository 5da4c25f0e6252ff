"""Integers from clients, in query strings, tokens and JSON bodies.

Every count, position, timestamp and ID this server hands out fits the canonical JSON range
±(2**53 - 1), and so does everything a well-behaved client sends back. Larger values would
overflow SQLite's 64-bit INTEGER (a 500) or behave differently on PostgreSQL, so they are
refused where they arrive.
"""

from __future__ import annotations

import re

SAFE_INT_MAX = 2**53 - 1

# ASCII only: int() also takes " 7", "1_000" and "٣", which no token of ours contains.
_DECIMAL = re.compile(r"-?[0-9]{1,16}")


def parse_int(raw: str) -> int | None:
    """The integer written in `raw` (decimal, optional minus), or None when it is not one
    or lies outside ±SAFE_INT_MAX."""
    if not _DECIMAL.fullmatch(raw):
        return None
    value = int(raw)
    return value if -SAFE_INT_MAX <= value <= SAFE_INT_MAX else None


def parse_count(raw: str) -> int | None:
    """Like parse_int, for offsets and positions: None unless it is >= 0."""
    value = parse_int(raw)
    return value if value is not None and value >= 0 else None


def is_safe_int(value: object) -> bool:
    """A JSON integer (not a bool) within ±SAFE_INT_MAX."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and -SAFE_INT_MAX <= value <= SAFE_INT_MAX)

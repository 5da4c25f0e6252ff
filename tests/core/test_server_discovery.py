"""The pure parts of server discovery: names, .well-known bodies and caching, SRV order."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from veche.core.identifiers import InvalidIdentifier
from veche.core.server_discovery import (
    WELL_KNOWN_DEFAULT_S,
    WELL_KNOWN_ERROR_MAX_S,
    WELL_KNOWN_MAX_S,
    ServerName,
    SrvRecord,
    cache_period_s,
    error_period_s,
    order_srv,
    parse_name,
    parse_well_known,
)


@pytest.mark.parametrize(("name", "parsed"), [
    ("example.org", ServerName("example.org", None, False)),
    ("example.org:8000", ServerName("example.org", 8000, False)),
    ("1.2.3.4", ServerName("1.2.3.4", None, True)),
    ("1.2.3.4:99", ServerName("1.2.3.4", 99, True)),
    ("[::1]:8448", ServerName("::1", 8448, True)),
])
def test_parse_name(name: str, parsed: ServerName) -> None:
    assert parse_name(name) == parsed


@pytest.mark.parametrize("name", ["", "exa mple.org", "a.org:", "a.org:70000", "a.org:0", "[::1", "[zz]"])
def test_parse_name_refuses(name: str) -> None:
    with pytest.raises(InvalidIdentifier):
        parse_name(name)


@pytest.mark.parametrize(("body", "delegated"), [
    (b'{"m.server": "matrix.example.org:443"}', "matrix.example.org:443"),
    (b'{"m.server": "matrix.example.org"}', "matrix.example.org"),
    (b'{"m.server": 1}', None),
    (b'{"m.server": "bad name:x"}', None),
    (b'{}', None),
    (b'[]', None),
    (b'not json', None),
    (b'\xff\xfe', None),
])
def test_well_known_body(body: bytes, delegated: str | None) -> None:
    assert parse_well_known(body) == delegated


@pytest.mark.parametrize(("header", "seconds"), [
    (None, WELL_KNOWN_DEFAULT_S),
    ("public", WELL_KNOWN_DEFAULT_S),
    ("max-age=600", 600),
    ("public, MAX-AGE=60", 60),
    ("max-age=99999999", WELL_KNOWN_MAX_S),
    ("no-store", 0),
])
def test_well_known_cache_period(header: str | None, seconds: int) -> None:
    assert cache_period_s(header) == seconds


def test_error_periods_back_off_up_to_an_hour() -> None:
    periods = [error_period_s(n) for n in range(1, 12)]
    assert periods == sorted(periods) and periods[0] < periods[1]
    assert periods[-1] == WELL_KNOWN_ERROR_MAX_S


def test_srv_order_is_by_priority_then_weighted() -> None:
    records = [SrvRecord(20, 0, 3, "c"), SrvRecord(10, 90, 1, "a"), SrvRecord(10, 10, 2, "b")]
    firsts = Counter(order_srv(records, random.Random(i))[0].target for i in range(2000))
    assert set(firsts) == {"a", "b"}
    assert 0.8 < firsts["a"] / 2000 < 0.97  # about 90%
    for i in range(50):
        assert order_srv(records, random.Random(i))[-1].target == "c"


def test_srv_dot_target_means_no_service() -> None:
    assert order_srv([SrvRecord(0, 0, 0, ".")]) == []

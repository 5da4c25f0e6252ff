"""Identifier grammar, from the appendices' grammar and examples."""

from __future__ import annotations

import pytest

from veche.core.identifiers import (
    InvalidIdentifier,
    is_historical_localpart,
    is_valid_event_id,
    is_valid_localpart,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    parse_server_name,
    parse_user_id,
    server_name_of,
)
from veche.core.room_versions import KNOWN_ROOM_VERSIONS

V11, V12 = KNOWN_ROOM_VERSIONS["11"], KNOWN_ROOM_VERSIONS["12"]
HASH = "Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"  # the spec's v12 room ID example


@pytest.mark.parametrize("server_name,parsed", [
    ("matrix.org", ("matrix.org", None)),
    ("matrix.org:8888", ("matrix.org", 8888)),
    ("1.2.3.4", ("1.2.3.4", None)),
    ("1.2.3.4:1234", ("1.2.3.4", 1234)),
    ("[1234:5678::abcd]", ("[1234:5678::abcd]", None)),
    ("[1234:5678::abcd]:5678", ("[1234:5678::abcd]", 5678)),
    ("localhost", ("localhost", None)),
    ("MATRIX.ORG", ("MATRIX.ORG", None)),
    ("[::ffff:1.2.3.4]", ("[::ffff:1.2.3.4]", None)),
])
def test_valid_server_names(server_name: str, parsed: tuple[str, int | None]) -> None:
    assert parse_server_name(server_name) == parsed
    assert is_valid_server_name(server_name)


@pytest.mark.parametrize("server_name", [
    "", ":8080", "matrix.org:", "matrix.org:123456", "matrix.org:80a", "matrix.org:80:80",
    "1.2.3.256", "999.1.1.1", "[1234:5678::abcd", "[1234::zz]", "[1:2:3]", "1234:5678::abcd",
    "matrix_org", "matrix.org/x", "mätrix.org", "a" * 256, "matrix org",
])
def test_invalid_server_names(server_name: str) -> None:
    assert not is_valid_server_name(server_name)
    with pytest.raises(InvalidIdentifier):
        parse_server_name(server_name)


@pytest.mark.parametrize("localpart,strict,historical", [
    ("alice", True, True),
    ("a.b_c=d-e/f+g0", True, True),
    ("Alice", False, True),
    ("al ice", False, True),
    ("ünïcode", False, True),
    ("", False, True),
    ("a:b", False, False),
    ("a\x00b", False, False),
])
def test_localparts(localpart: str, strict: bool, historical: bool) -> None:
    assert is_valid_localpart(localpart) is strict
    assert is_historical_localpart(localpart) is historical


@pytest.mark.parametrize("user_id,strict,lenient", [
    ("@alice:example.org", True, True),
    ("@alice:[::1]:8448", True, True),
    ("@Alice:example.org", False, True),   # historical
    ("@:example.org", False, True),        # historical: empty localpart
    ("alice:example.org", False, False),
    ("@alice", False, False),
    ("@alice:", False, False),
    ("@alice:bad_server", False, False),
    ("@a:b:c", False, False),              # "b:c" is not a server name
    ("@" + "a" * 242 + ":example.org", True, True),   # exactly 255 bytes
    ("@" + "a" * 243 + ":example.org", False, False),
    ("@\ud800:example.org", False, False),  # lone surrogate
])
def test_user_ids(user_id: str, strict: bool, lenient: bool) -> None:
    assert is_valid_user_id(user_id, strict=True) is strict
    assert is_valid_user_id(user_id) is lenient


def test_parse_user_id() -> None:
    assert parse_user_id("@alice:example.org:8448") == ("alice", "example.org:8448")
    assert parse_user_id("@Bob:example.org") == ("Bob", "example.org")
    with pytest.raises(InvalidIdentifier):
        parse_user_id("@Bob:example.org", strict=True)
    assert not is_valid_user_id(None)
    assert server_name_of("@alice:example.org:8448") == "example.org:8448"
    assert server_name_of("!" + HASH) == ""


@pytest.mark.parametrize("room_id,either,v11,v12", [
    ("!opaque:example.org", True, True, False),
    ("!" + HASH, True, False, True),
    ("!" + HASH[:-1], False, False, False),
    ("!" + HASH + "=", False, False, False),
    ("!:example.org", False, False, False),
    ("!opaque", False, False, False),
    ("#opaque:example.org", False, False, False),
    ("!" + "r" * 242 + ":example.org", True, True, False),
    ("!" + "r" * 243 + ":example.org", False, False, False),
])
def test_room_ids(room_id: str, either: bool, v11: bool, v12: bool) -> None:
    assert is_valid_room_id(room_id) is either
    assert is_valid_room_id(room_id, V11) is v11
    assert is_valid_room_id(room_id, V12) is v12


@pytest.mark.parametrize("alias,ok", [
    ("#room:example.org", True),
    ("#Ünïcode room:example.org", True),
    ("#:example.org", True),
    ("#room", False),
    ("#a:b:c", False),
    ("room:example.org", False),
    ("#" + "a" * 244 + ":example.org", False),
])
def test_room_aliases(alias: str, ok: bool) -> None:
    assert is_valid_room_alias(alias) is ok


@pytest.mark.parametrize("event_id,any_version,v11", [
    ("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", True, True),  # the spec's v4 example
    ("$0:domain", True, False),
    ("$Rqnc+F/dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", False, False),
    ("$short", False, False),
    ("Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", False, False),
])
def test_event_ids(event_id: str, any_version: bool, v11: bool) -> None:
    assert is_valid_event_id(event_id) is any_version
    assert is_valid_event_id(event_id, V11) is v11

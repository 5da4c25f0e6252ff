"""Values no client should send but anyone can: integers beyond 64 bits (or below), NUL
characters, undecodable headers. Each gets a 4xx Matrix error, the same on both backends,
and never a 500; free text with a NUL in it is kept and given back exactly as sent."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from urllib.parse import quote

from tests.conftest import ServerProcess
from tests.sync_helpers import room_with, send

HUGE = [2**63, 2**64, -(2**63) - 1]


def _q(value: str) -> str:
    return quote(value, safe="")


async def _fixture(make_client: Any) -> tuple[Any, dict[str, str]]:
    alice, bob, room = await room_with(make_client)
    event_id = await send(alice, room, "hello")
    status, media = await alice.post("/_matrix/media/v3/upload", data=b"not an image",
                                     headers={"Content-Type": "text/plain"})
    assert status == 200, media
    mxc = media["content_uri"][len("mxc://"):]
    return alice, {"room": _q(room), "event": _q(event_id), "alice": _q(alice.user_id),
                   "bob": _q(bob.user_id), "mxc": mxc}


def _query_cases(ids: dict[str, str], n: int) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, query) where one query parameter carries the integer n."""
    room, event = ids["room"], ids["event"]
    token = f"s{n}_0"
    flt = json.dumps({"limit": n})
    sync_flt = json.dumps({"room": {"timeline": {"limit": n}}})
    messages = f"rooms/{room}/messages"
    return [
        ("GET", messages, {"from": token}),
        ("GET", messages, {"from": f"s1_{n}"}),
        ("GET", messages, {"to": token}),
        ("GET", messages, {"limit": str(n)}),
        ("GET", messages, {"filter": flt}),
        ("GET", f"rooms/{room}/context/{event}", {"limit": str(n)}),
        ("GET", f"rooms/{room}/context/{event}", {"filter": flt}),
        ("GET", f"/_matrix/client/v1/rooms/{room}/timestamp_to_event", {"ts": str(n), "dir": "f"}),
        ("GET", f"rooms/{room}/members", {"at": token}),
        ("GET", "sync", {"since": token}),
        ("GET", "sync", {"timeout": str(n)}),
        ("GET", "sync", {"filter": str(n)}),
        ("GET", "sync", {"filter": sync_flt}),
        ("GET", "publicRooms", {"limit": str(n)}),
        ("GET", "publicRooms", {"since": f"o{n}"}),
        ("GET", f"/_matrix/client/v1/rooms/{room}/relations/{event}", {"limit": str(n)}),
        ("GET", f"/_matrix/client/v1/rooms/{room}/relations/{event}", {"from": token}),
        ("GET", f"/_matrix/client/v1/rooms/{room}/relations/{event}", {"to": token}),
        ("GET", f"/_matrix/client/v1/rooms/{room}/threads", {"limit": str(n)}),
        ("GET", f"/_matrix/client/v1/rooms/{room}/threads", {"from": f"t{n}"}),
        ("GET", f"/_matrix/client/v1/rooms/{room}/hierarchy", {"limit": str(n)}),
        ("GET", f"/_matrix/client/v1/rooms/{room}/hierarchy", {"max_depth": str(n)}),
        ("GET", f"/_matrix/client/v1/rooms/{room}/hierarchy", {"from": f"{n}.3.0"}),
        ("POST", "search", {"next_batch": str(n)}),
        ("GET", "keys/changes", {"from": token, "to": "s1_0"}),
        ("GET", "keys/changes", {"from": "s1_0", "to": token}),
        ("GET", "/_matrix/client/v1/mutual_rooms", {"user_id": ids["bob"], "from": str(n)}),
        ("GET", f"/_matrix/client/v1/media/thumbnail/{ids['mxc']}", {"width": str(n), "height": "32"}),
        ("GET", f"/_matrix/client/v1/media/thumbnail/{ids['mxc']}", {"width": "32", "height": str(n)}),
        ("GET", f"/_matrix/client/v1/media/download/{ids['mxc']}", {"timeout_ms": str(n)}),
        ("GET", "/_matrix/client/v1/media/preview_url", {"url": "https://example.org/", "ts": str(n)}),
    ]


def _body_cases(ids: dict[str, str], n: int) -> list[tuple[str, str, Any]]:
    """(method, path, body) where the JSON body carries the integer n somewhere."""
    room, alice = ids["room"], ids["alice"]
    search_body = {"search_categories": {"room_events": {"search_term": "hello",
                                                         "filter": {"limit": n}}}}
    return [
        ("PUT", f"rooms/{room}/typing/{alice}", {"typing": True, "timeout": n}),
        ("POST", "user_directory/search", {"search_term": "u", "limit": n}),
        ("POST", "publicRooms", {"limit": n}),
        ("POST", "publicRooms", {"since": f"o{n}"}),
        ("POST", "keys/query", {"device_keys": {}, "timeout": n}),
        ("POST", "keys/claim", {"one_time_keys": {}, "timeout": n}),
        ("POST", f"user/{alice}/filter", {"room": {"timeline": {"limit": n}}}),
        ("POST", f"user/{alice}/filter", {"presence": {"limit": n}}),
        ("POST", "search", search_body),
        ("POST", "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/NOPE/events",
         {"next_batch": str(n)}),
        ("PUT", f"rooms/{room}/send/m.room.message/big{n}", {"msgtype": "m.text", "body": "x", "n": n}),
        ("PUT", f"rooms/{room}/state/m.room.power_levels", {"users_default": n}),
    ]


async def test_integers_beyond_64_bits_are_refused(make_client: Any) -> None:
    alice, ids = await _fixture(make_client)
    wrong = []
    for n in HUGE:
        for method, path, query in _query_cases(ids, n):
            body = {"search_categories": {"room_events": {"search_term": "x"}}} if method == "POST" else None
            status, answer = await alice.request(method, path, body, params=query)
            # A filter is JSON: its bad limit may be called bad JSON instead.
            allowed = ("M_INVALID_PARAM", "M_BAD_JSON") if "{" in str(query) else ("M_INVALID_PARAM",)
            if status != 400 or not isinstance(answer, dict) or answer.get("errcode") not in allowed:
                wrong.append(f"{method} {path[:50]} {query} -> {status} {str(answer)[:80]}")
        for method, path, body in _body_cases(ids, n):
            status, answer = await alice.request(method, path, body)
            if status != 400 or not str(answer.get("errcode", "")).startswith("M_"):
                wrong.append(f"{method} {path[:50]} {str(body)[:80]} -> {status} {str(answer)[:80]}")
        status, answer = await alice.get(f"user/{ids['alice']}/filter/{n}")
        if status != 404 or answer.get("errcode") != "M_NOT_FOUND":
            wrong.append(f"GET filter/{n} -> {status} {str(answer)[:80]}")
    assert not wrong, "\n".join(wrong)


async def test_digits_python_reads_but_tokens_never_hold_are_refused(make_client: Any) -> None:
    """"²" passes str.isdigit() and "1_0" passes int(); neither is a token we hand out."""
    alice, ids = await _fixture(make_client)
    room = ids["room"]
    search = {"search_categories": {"room_events": {"search_term": "x"}}}
    wrong = []
    for odd in ("\u00b2", "1_0", " 1", "\u0663"):
        for method, path, query in [
            ("POST", "search", {"next_batch": odd}),
            ("GET", f"/_matrix/client/v1/rooms/{room}/threads", {"from": f"t{odd}"}),
            ("GET", "publicRooms", {"since": f"o{odd}"}),
            ("GET", "/_matrix/client/v1/mutual_rooms", {"user_id": ids["bob"], "from": odd}),
            ("GET", f"/_matrix/client/v1/rooms/{room}/hierarchy", {"from": f"{odd}.3.0"}),
            ("GET", "sync", {"filter": odd}),
            ("GET", f"rooms/{room}/messages", {"from": f"s{odd}_0"}),
            ("GET", f"rooms/{room}/messages", {"limit": odd}),
        ]:
            status, answer = await alice.request(method, path, search if method == "POST" else None,
                                                 params=query)
            if status != 400 or answer.get("errcode") != "M_INVALID_PARAM":
                wrong.append(f"{method} {path[:50]} {query} -> {status} {str(answer)[:80]}")
    assert not wrong, "\n".join(wrong)



def _raw_request(server: ServerProcess, head: bytes) -> tuple[int, dict[str, Any]]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status_line, _, rest = raw.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body)


async def test_undecodable_authorization_header_is_an_unknown_token(homeserver: ServerProcess) -> None:
    for header, errcode in ((b"Bearer \xff\xfe\xfd", "M_UNKNOWN_TOKEN"),
                            (b"Bearer abc\xc3", "M_UNKNOWN_TOKEN"),
                            (b"Bearer \xed\xa0\x80", "M_UNKNOWN_TOKEN"),
                            (b"\xff\xfe abc", "M_MISSING_TOKEN")):  # not even a Bearer token
        status, body = await asyncio.to_thread(
            _raw_request, homeserver,
            b"GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nAuthorization: " + header + b"\r\n")
        assert (status, body.get("errcode")) == (401, errcode), (header, status, body)
    # ... and the same in the deprecated query parameter, where a NUL fits too.
    for token in (b"%FF%FE", b"abc%00def", b"%ED%A0%80"):
        status, body = await asyncio.to_thread(
            _raw_request, homeserver,
            b"GET /_matrix/client/v3/account/whoami?access_token=" + token + b" HTTP/1.1\r\n")
        assert (status, body.get("errcode")) == (401, "M_UNKNOWN_TOKEN"), (token, status, body)

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
    # ... and the same in the deprecated query parameter (where a NUL, as anywhere in a URL,
    # is refused as such).
    status, body = await asyncio.to_thread(
        _raw_request, homeserver, b"GET /_matrix/client/v3/account/whoami?access_token=a%00 HTTP/1.1\r\n")
    assert (status, body.get("errcode")) == (400, "M_INVALID_PARAM"), (status, body)
    for token in (b"%FF%FE", b"%ED%A0%80"):
        status, body = await asyncio.to_thread(
            _raw_request, homeserver,
            b"GET /_matrix/client/v3/account/whoami?access_token=" + token + b" HTTP/1.1\r\n")
        assert (status, body.get("errcode")) == (401, "M_UNKNOWN_TOKEN"), (token, status, body)


NUL_TEXT = "be\x00fore"
NUL = quote("a\x00b", safe="")


async def test_nul_in_free_text_round_trips_and_in_names_is_refused(make_client: Any) -> None:
    """Event content is JSON, which carries a NUL escaped: it comes back exactly as sent.
    Identifiers, types, keys and transaction IDs never hold one (PostgreSQL's text cannot,
    and the spec's grammars exclude it): a 400 on both backends. So are the few free-text
    values kept as bare text columns (display name, device name, status message)."""
    alice, ids = await _fixture(make_client)
    room, me = ids["room"], ids["alice"]
    server = alice.user_id.split(":", 1)[1]
    sent: dict[str, str] = {}

    async def event_content(event_id: str) -> Any:
        status, event = await alice.get(f"rooms/{room}/event/{quote(event_id)}")
        assert status == 200, event
        return event["content"]

    async def state(event_type: str, key: str = "") -> Any:
        status, content = await alice.get(f"rooms/{room}/state/{event_type}/{quote(key)}")
        assert status == 200, content
        return content

    # (what, method, path, body, expected status, read back or None)
    cases: list[tuple[str, str, str, Any, int, Any]] = [
        ("message body", "PUT", f"rooms/{room}/send/m.room.message/nul1",
         {"msgtype": "m.text", "body": f"hello {NUL_TEXT} world"}, 200,
         lambda r: event_content(r["event_id"])),
        ("reply target", "PUT", f"rooms/{room}/send/m.room.message/nul2",
         {"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.thread",
                                                            "event_id": "$a\x00b"}}, 200,
         lambda r: event_content(r["event_id"])),
        ("room name", "PUT", f"rooms/{room}/state/m.room.name", {"name": NUL_TEXT}, 200,
         lambda r: state("m.room.name")),
        ("topic", "PUT", f"rooms/{room}/state/m.room.topic", {"topic": NUL_TEXT}, 200,
         lambda r: state("m.room.topic")),
        ("member displayname", "PUT", f"rooms/{room}/state/m.room.member/{me}",
         {"membership": "join", "displayname": NUL_TEXT}, 200,
         lambda r: state("m.room.member", alice.user_id)),
        ("account data content", "PUT", f"user/{me}/account_data/x.nul", {"v": NUL_TEXT}, 200,
         lambda r: alice.get(f"user/{me}/account_data/x.nul")),
        ("profile displayname", "PUT", f"profile/{me}/displayname", {"displayname": NUL_TEXT}, 400, None),
        ("device name", "PUT", f"devices/{quote(alice.device_id)}", {"display_name": NUL_TEXT}, 400, None),
        ("status message", "PUT", f"presence/{me}/status",
         {"presence": "online", "status_msg": NUL_TEXT}, 400, None),
        ("event type", "PUT", f"rooms/{room}/send/{NUL}/t1", {"body": "x"}, 400, None),
        ("state event type", "PUT", f"rooms/{room}/state/{NUL}/", {"x": 1}, 400, None),
        ("state key", "PUT", f"rooms/{room}/state/x.nul/{NUL}", {"x": 1}, 400, None),
        ("txnId", "PUT", f"rooms/{room}/send/m.room.message/{NUL}", {"body": "x"}, 400, None),
        ("account-data type", "PUT", f"user/{me}/account_data/{NUL}", {"x": 1}, 400, None),
        ("room account-data type", "PUT", f"user/{me}/rooms/{room}/account_data/{NUL}", {"x": 1}, 400,
         None),
        ("tag", "PUT", f"user/{me}/rooms/{room}/tags/{NUL}", {}, 400, None),
        ("alias", "PUT", f"directory/room/{quote('#' + chr(0) + 'x:' + server, safe='')}",
         {"room_id": alice.user_id and room.replace("%21", "!")}, 400, None),
        ("alias lookup", "GET", f"directory/room/{quote('#a' + chr(0) + ':' + server, safe='')}", None,
         400, None),
        ("room ID", "GET", f"rooms/{quote('!a' + chr(0) + ':' + server, safe='')}/state", None, 400, None),
        ("room ID to join", "POST", f"join/{quote('!a' + chr(0) + ':' + server, safe='')}", {}, 400, None),
        ("user ID", "GET", f"profile/{quote('@a' + chr(0) + ':' + server, safe='')}", None, 400, None),
        ("invitee", "POST", f"rooms/{room}/invite", {"user_id": f"@a\x00:{server}"}, 400, None),
        ("query parameter", "GET", f"register/available?username={NUL}", None, 400, None),
        ("report reason", "POST", f"rooms/{room}/report/{ids['event']}", {"reason": NUL_TEXT}, 400, None),
        ("to-device type", "PUT", f"sendToDevice/{NUL}/t1", {"messages": {}}, 400, None),
    ]
    wrong = []
    for what, method, path, body, expected, read_back in cases:
        status, answer = await alice.request(method, path, body)
        if status != expected:
            wrong.append(f"{what}: {status} {str(answer)[:100]}")
            continue
        if expected == 400 and answer.get("errcode") not in ("M_INVALID_PARAM", "M_BAD_JSON",
                                                               "M_INVALID_USERNAME"):
            wrong.append(f"{what}: {answer}")
        if read_back is not None:
            got = await read_back(answer)
            got = got[1] if isinstance(got, tuple) else got
            if got != body:
                wrong.append(f"{what}: read back {got!r}, sent {body!r}")
        sent[what] = path
    assert not wrong, "\n".join(wrong)

    # Logging in as a name no account can have: the same answer on both backends.
    for user in ("a\x00b", f"@a\x00b:{server}"):
        status, answer = await make_client().post(
            "login", {"type": "m.login.password", "password": "x",
                      "identifier": {"type": "m.id.user", "user": user}}, token=False)
        assert (status, answer.get("errcode")) == (400, "M_INVALID_PARAM"), (status, answer)
    # The text around a NUL is still found by search.
    status, found = await alice.post("search", {"search_categories": {"room_events": {
        "search_term": "fore", "keys": ["content.body"]}}})
    assert status == 200, found
    results = found["search_categories"]["room_events"]["results"]
    assert [r["result"]["content"]["body"] for r in results] == [f"hello {NUL_TEXT} world"]

"""Hostile peers (issue 12): forged and misaddressed X-Matrix headers on every endpoint,
forged, tampered, oversized and unauthorised PDUs, replayed and oversized transactions,
PDUs for rooms the origin is not in, membership events that are not what they claim, and
requests for events the asker may not see. Each is refused with the status and errcode the
spec gives, and the room's state and timeline, as a local client sees them, are unchanged
afterwards. The test plays the remote servers (tests/federation/fake_origin.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from signedjson.key import generate_signing_key
from yarl import URL

from tests.conftest import Client, ServerProcess
from tests.federation.fake_origin import F1, FakeServer, SharedRoom, q
from tests.federation.https_servers import RecordingServer
from tests.federation.pki import TestCA
from tests.federation.test_receive_pdus import shared_room, timeline
from veche.core.events import compute_event_id, sign_event
from veche.core.federation_auth import sign_request
from veche.services.federation_inbound import SAVE_AFTER_S

F2 = "/_matrix/federation/v2"
OTHER_KEY = generate_signing_key("k1")  # the origin's key ID, not its key


@pytest.fixture
async def stranger(test_ca: TestCA) -> AsyncIterator[FakeServer]:
    """A server with nobody in any room."""
    server = await RecordingServer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    yield FakeServer(server)
    await server.close()


async def raw(http: aiohttp.ClientSession, veche: ServerProcess, method: str, target: str,
              body: bytes | None, auth: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    async with http.request(method, URL(veche.base_url + target, encoded=True), data=body,
                            headers=headers) as r:
        return r.status, await r.json(content_type=None)


def encode(body: Any) -> bytes | None:
    return None if body is None else json.dumps(body).encode()


async def snapshot(client: Client, room_id: str) -> tuple[dict[tuple[str, str], str], list[str]]:
    """The room as a local member sees it: current state and timeline (event IDs)."""
    status, events = await client.get(f"rooms/{q(room_id)}/state")
    assert status == 200, events
    state = {(e["type"], e["state_key"]): e["event_id"] for e in events}
    return state, [e["event_id"] for e in await timeline(client, room_id)]


def error_of(status: int, body: Any) -> tuple[int, str | None]:
    return status, body.get("errcode") if isinstance(body, dict) else None


async def private_room(alice: Client) -> SharedRoom:
    """An invite-only room with alice alone: no server but Veche is in it."""
    status, body = await alice.post("createRoom", {"preset": "private_chat"})
    assert status == 200, body
    return await SharedRoom.of(alice, body["room_id"])


async def test_bad_x_matrix_headers_on_every_endpoint(
        veche: ServerProcess, origin: FakeServer, stranger: FakeServer,
        http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    rid, me = room.room_id, veche.server_name
    status, _ = await alice.put(f"directory/room/{q('#hostile:' + me)}", {"room_id": rid})
    assert status == 200
    before = await snapshot(alice, rid)
    bob, carol = origin.user("bob"), origin.user("carol")
    create, latest = room.state[("m.room.create", "")], room.latest[0]
    message_id, message = room.build(origin, bob, "m.room.message", {"body": "sneaked in"},
                                     advance=False)
    join_id, join = room.build(origin, carol, "m.room.member", {"membership": "join"}, carol,
                               advance=False)
    leave_id, leave = room.build(origin, bob, "m.room.member", {"membership": "leave"}, bob,
                                 advance=False)
    knock_id, knock = room.build(origin, carol, "m.room.member", {"membership": "knock"}, carol,
                                 advance=False)
    invite_id, invite = room.build(origin, bob, "m.room.member", {"membership": "invite"},
                                   "@dave:" + me, advance=False)
    endpoints: list[tuple[str, str, Any]] = [
        ("PUT", f"{F1}/send/hdr", {"origin": origin.name, "origin_server_ts": 0,
                                   "pdus": [message], "edus": []}),
        ("GET", f"{F1}/event/{q(create)}", None),
        ("GET", f"{F1}/state/{q(rid)}?event_id={q(latest)}", None),
        ("GET", f"{F1}/state_ids/{q(rid)}?event_id={q(latest)}", None),
        ("GET", f"{F1}/event_auth/{q(rid)}/{q(latest)}", None),
        ("GET", f"{F1}/backfill/{q(rid)}?v={q(latest)}&limit=5", None),
        ("POST", f"{F1}/get_missing_events/{q(rid)}", {"earliest_events": [create],
                                                       "latest_events": [latest]}),
        ("GET", f"{F1}/timestamp_to_event/{q(rid)}?ts=0&dir=f", None),
        ("GET", f"{F1}/make_join/{q(rid)}/{q(carol)}?ver=12", None),
        ("PUT", f"{F2}/send_join/{q(rid)}/{q(join_id)}", join),
        ("GET", f"{F1}/make_leave/{q(rid)}/{q(bob)}", None),
        ("PUT", f"{F2}/send_leave/{q(rid)}/{q(leave_id)}", leave),
        ("GET", f"{F1}/make_knock/{q(rid)}/{q(carol)}?ver=12", None),
        ("PUT", f"{F1}/send_knock/{q(rid)}/{q(knock_id)}", knock),
        ("PUT", f"{F1}/invite/{q(rid)}/{q(invite_id)}", invite),
        ("PUT", f"{F2}/invite/{q(rid)}/{q(invite_id)}", {"room_version": room.rv.identifier,
                                                         "event": invite, "invite_room_state": []}),
        ("GET", f"{F1}/query/profile?user_id={q(alice.user_id or '')}", None),
        ("GET", f"{F1}/query/directory?room_alias={q('#hostile:' + me)}", None),
    ]
    elsewhere = sign_request(origin.key, origin.name, me, "GET", f"{F1}/version")

    def forgeries(method: str, target: str, body: Any) -> list[tuple[str, str | None]]:
        return [
            ("no header", None),
            ("another scheme", "Bearer abc"),
            ("unparseable", 'X-Matrix origin="'),
            ("forged signature", sign_request(OTHER_KEY, origin.name, me, method, target, body)),
            ("for another server", sign_request(origin.key, origin.name, "localhost:1", method,
                                                target, body)),
            ("another request's header, replayed", elsewhere),
            ("signed over another body", sign_request(origin.key, origin.name, me, method, target,
                                                      {"pdus": [], "edus": []})),
            ("as another origin", sign_request(origin.key, stranger.name, me, method, target, body)),
            ("as this server", sign_request(origin.key, me, me, method, target, body)),
        ]

    for method, target, body in endpoints:
        for what, header in forgeries(method, target, body):
            status, answer = await raw(http, veche, method, target, encode(body), header)
            assert error_of(status, answer) == (401, "M_UNAUTHORIZED"), (what, method, target, answer)
    assert await snapshot(alice, rid) == before
    for event_id in (message_id, join_id, leave_id, knock_id, invite_id):
        assert (await origin.request(http, veche, "GET", f"{F1}/event/{q(event_id)}"))[0] == 404


async def test_hostile_pdus_change_nothing(veche: ServerProcess, origin: FakeServer,
                                           http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    rid = room.room_id
    bob, carol = origin.user("bob"), origin.user("carol")
    lonely = await private_room(alice)
    status, pl = await alice.get(f"rooms/{q(rid)}/state/m.room.power_levels/")
    assert status == 200
    coup_id, coup = room.build(origin, bob, "m.room.power_levels",
                               {**pl, "users": {**pl["users"], bob: 100}}, "", advance=False)

    def msg(**kw: Any) -> tuple[str, dict[str, Any]]:
        return room.build(origin, bob, "m.room.message", {"body": "hostile"}, advance=False, **kw)

    def resigned(pdu: dict[str, Any], **changes: Any) -> tuple[str, dict[str, Any]]:
        changed = {k: v for k, v in {**pdu, **changes}.items() if k not in ("hashes", "signatures")}
        signed = sign_event(changed, origin.name, origin.key, room.rv)
        return compute_event_id(signed, room.rv), signed

    _, plain = msg()
    unsigned_id, unsigned = compute_event_id(plain, room.rv), {**plain, "signatures": {}}
    # Each: the PDUs, and what the answer says of each (an error containing the text);
    # None: left out of the answer (a room unknown here).
    cases: list[tuple[str, Callable[[], list[tuple[str, dict[str, Any]]]], list[str | None]]] = [
        ("signed with another key", lambda: [msg(key=OTHER_KEY)], ["signature"]),
        ("not signed", lambda: [(unsigned_id, unsigned)], ["not signed"]),
        ("sent for another server's user",
         lambda: [room.build(origin, "@alice:elsewhere.test", "m.room.message", {"body": "x"},
                             advance=False)], ["not signed"]),
        ("larger than 65536 bytes",
         lambda: [room.build(origin, bob, "m.room.message", {"body": "x" * 66_000},
                             advance=False)], ["65536"]),
        ("21 prev_events", lambda: [resigned(plain, prev_events=[room.latest[0]] * 21)],
         ["prev_events"]),
        ("11 auth_events", lambda: [resigned(plain, auth_events=[room.latest[0]] * 11)],
         ["auth_events"]),
        ("depth beyond the canonical JSON range", lambda: [resigned(plain, depth=2**53)],
         ["bad event"]),
        ("a message from the origin's user who is not in the room",
         lambda: [room.build(origin, carol, "m.room.message", {"body": "x"}, advance=False)],
         ["rejected"]),
        ("bob makes himself admin", lambda: [(coup_id, coup)], ["rejected"]),
        ("bob bans alice",
         lambda: [room.build(origin, bob, "m.room.member", {"membership": "ban"}, alice.user_id,
                             advance=False)], ["rejected"]),
        ("bob joins alice",
         lambda: [room.build(origin, bob, "m.room.member", {"membership": "join"}, alice.user_id,
                             advance=False)], ["rejected"]),
        # (A v12 create event names no room: one naming this room is no valid event.)
        ("a second create event",
         lambda: [room.build(origin, bob, "m.room.create", {"room_version": room.rv.identifier},
                             "", advance=False)], ["bad event"]),
        # Recorded: the coup again, in a new transaction, is still rejected, and an event
        # that cites it as an auth event is rejected for that.
        ("the rejected event again", lambda: [(coup_id, coup)], ["rejected"]),
        ("authorised by the rejected event",
         lambda: [resigned(plain, auth_events=sorted([*plain["auth_events"], coup_id]))],
         ["rejected"]),
        ("a room where the origin has nobody",
         lambda: [lonely.build(origin, bob, "m.room.message", {"body": "x"}, advance=False)],
         ["not in the room"]),
        ("a room unknown here",
         lambda: [SharedRoom("!" + "U" * 43, room.rv, dict(room.state), room.latest[0], 3).build(
             origin, bob, "m.room.message", {"body": "x"})], [None]),
    ]
    before, lonely_before = await snapshot(alice, rid), await snapshot(alice, lonely.room_id)
    for what, build, expected in cases:
        built = build()
        status, result = await origin.send(http, veche, [p for _, p in built])
        assert status == 200, (what, result)
        for (event_id, _), error in zip(built, expected, strict=True):
            if error is None:
                assert event_id not in result["pdus"], (what, result)
            else:
                assert error in result["pdus"][event_id].get("error", ""), (what, result)
            status, _ = await origin.request(http, veche, "GET", f"{F1}/event/{q(event_id)}")
            assert status in (403, 404), (what, status)
        assert await snapshot(alice, rid) == before, what
        assert await snapshot(alice, lonely.room_id) == lonely_before, what
    status, got = await alice.get(f"rooms/{q(rid)}/state/m.room.power_levels/")
    assert got == pl
    # A good message still goes in, on top of what was there.
    good_id, good = room.build(origin, bob, "m.room.message", {"body": "good"})
    assert await origin.send(http, veche, [good]) == (200, {"pdus": {good_id: {}}})
    assert (await snapshot(alice, rid))[1] == [*before[1], good_id]


async def test_a_tampered_event_is_kept_redacted(veche: ServerProcess, origin: FakeServer,
                                                 http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    bob = origin.user("bob")
    state_before, timeline_before = await snapshot(alice, room.room_id)
    # The signature covers the redacted form; the content hash the whole: only the hash
    # fails. Bob's new display name is not what was signed: he stays joined, nameless.
    name_id, name = room.build(origin, bob, "m.room.member",
                               {"membership": "join", "displayname": "Signed"}, bob)
    tampered = {**name, "content": {"membership": "join", "displayname": "Tampered"}}
    assert await origin.send(http, veche, [tampered]) == (200, {"pdus": {name_id: {}}})
    status, member = await alice.get(f"rooms/{q(room.room_id)}/state/m.room.member/{q(bob)}")
    assert (status, member) == (200, {"membership": "join"})
    state, events = await snapshot(alice, room.room_id)
    assert events == [*timeline_before, name_id]
    assert state == {**state_before, ("m.room.member", bob): name_id}
    status, got = await origin.request(http, veche, "GET", f"{F1}/event/{q(name_id)}")
    assert status == 200 and got["pdus"][0]["content"] == {"membership": "join"}, got


async def test_hostile_transactions(veche: ServerProcess, origin: FakeServer,
                                    http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    rid, me = room.room_id, veche.server_name
    bob = origin.user("bob")
    before = await snapshot(alice, rid)

    def txn(pdus: list[Any], edus: list[Any] | None = None) -> dict[str, Any]:
        return {"origin": origin.name, "origin_server_ts": int(time.time() * 1000),
                "pdus": pdus, "edus": edus or []}

    def messages(n: int, size: int = 10) -> list[dict[str, Any]]:
        return [room.build(origin, bob, "m.room.message", {"body": f"{i}" + "x" * size},
                           advance=False)[1] for i in range(n)]

    over_8_mib = txn([{"padding": "x" * (9 * 1024 * 1024)}])
    cases: list[tuple[str, bytes, tuple[int, str]]] = [
        ("51 PDUs", encode(txn(messages(51))) or b"", (400, "M_BAD_JSON")),
        ("101 EDUs", encode(txn([], [{"edu_type": "m.typing", "content": {}}] * 101)) or b"",
         (400, "M_BAD_JSON")),
        ("pdus not a list", encode({**txn([]), "pdus": {"a": 1}}) or b"", (400, "M_BAD_JSON")),
        ("edus not a list", encode({**txn([]), "edus": "x"}) or b"", (400, "M_BAD_JSON")),
        ("a body over 8 MiB", encode(over_8_mib) or b"", (413, "M_TOO_LARGE")),
        ("not JSON", b"{not json", (400, "M_NOT_JSON")),
        ("not an object", b"[]", (400, "M_BAD_JSON")),
    ]
    for i, (what, body, expected) in enumerate(cases):
        target = f"{F1}/send/hostile{i}"
        try:
            content = json.loads(body)
        except ValueError:
            content = None
        auth = sign_request(origin.key, origin.name, me, "PUT", target, content)
        status, answer = await raw(http, veche, "PUT", target, body, auth)
        assert error_of(status, answer) == expected, (what, answer)
    assert await snapshot(alice, rid) == before
    # Replayed: the very same request again gets the same answer and stores nothing twice;
    # another body under a used transaction ID too; the same header on another ID is refused.
    msg_id, msg = room.build(origin, bob, "m.room.message", {"body": "once"})
    target, body = f"{F1}/send/replayed", txn([msg])
    auth = sign_request(origin.key, origin.name, me, "PUT", target, body)
    first = await raw(http, veche, "PUT", target, encode(body), auth)
    assert first == (200, {"pdus": {msg_id: {}}})
    assert await raw(http, veche, "PUT", target, encode(body), auth) == first
    other_id, other = room.build(origin, bob, "m.room.message", {"body": "other"}, advance=False)
    assert await origin.send(http, veche, [other], txn_id="replayed") == first
    # Answered from memory so far; the same once the answer is recorded in the database.
    await asyncio.sleep(SAVE_AFTER_S + 0.5)
    assert await origin.send(http, veche, [other], txn_id="replayed") == first
    status, answer = await raw(http, veche, "PUT", f"{F1}/send/replayed2", encode(body), auth)
    assert error_of(status, answer) == (401, "M_UNAUTHORIZED")
    state, events = await snapshot(alice, rid)
    assert (state, events) == (before[0], [*before[1], msg_id])
    assert (await origin.request(http, veche, "GET", f"{F1}/event/{q(other_id)}"))[0] == 404


async def test_hostile_membership_requests(veche: ServerProcess, origin: FakeServer,
                                           http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    rid, me = room.room_id, veche.server_name
    bob, carol = origin.user("bob"), origin.user("carol")
    lonely = await private_room(alice)
    dave = await Client(http, veche.base_url).register("dave")
    v = room.rv.identifier
    frank = origin.user("frank")
    status, _ = await alice.post(f"rooms/{q(rid)}/ban", {"user_id": frank, "reason": "spam"})
    assert status == 200
    await room.refresh(alice)

    def member(r: SharedRoom, sender: str, membership: str, state_key: str | None = None,
               **kw: Any) -> tuple[str, dict[str, Any]]:
        return r.build(origin, sender, "m.room.member", {"membership": membership},
                       state_key or sender, advance=False, **kw)

    def tampered(event: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        event_id, pdu = event
        return event_id, {**pdu, "content": {**pdu["content"], "displayname": "tampered"}}

    def invite_body(event: dict[str, Any], version: str = v) -> dict[str, Any]:
        return {"room_version": version, "event": event, "invite_room_state": []}

    def put(path: str, event: tuple[str, dict[str, Any]], r: SharedRoom = room,
            event_id: str | None = None, body: Any = None) -> tuple[str, str, Any]:
        return ("PUT", f"{path}/{q(r.room_id)}/{q(event_id or event[0])}",
                event[1] if body is None else body)

    join = member(room, carol, "join")
    big_join = room.build(origin, carol, "m.room.member",
                          {"membership": "join", "displayname": "x" * 66_000}, carol, advance=False)
    lonely_join = member(lonely, carol, "join")
    invite_dave = member(room, bob, "invite", dave.user_id)
    bad_invite_key = room.build(origin, bob, "m.room.member", {"membership": "invite"},
                                dave.user_id, advance=False, key=OTHER_KEY)
    forbidden, bad_json = (403, "M_FORBIDDEN"), (400, "M_BAD_JSON")
    cases: list[tuple[str, tuple[str, str, Any], tuple[int, str]]] = [
        ("make_join for another server's user",
         ("GET", f"{F1}/make_join/{q(rid)}/{q(alice.user_id or '')}?ver={v}", None), forbidden),
        ("make_join for a room unknown here",
         ("GET", f"{F1}/make_join/{q('!nope:' + me)}/{q(carol)}?ver={v}", None),
         (404, "M_NOT_FOUND")),
        ("make_join not speaking the room's version",
         ("GET", f"{F1}/make_join/{q(rid)}/{q(carol)}?ver=1", None),
         (400, "M_INCOMPATIBLE_ROOM_VERSION")),
        ("make_join to an invite-only room",
         ("GET", f"{F1}/make_join/{q(lonely.room_id)}/{q(carol)}?ver={v}", None), forbidden),
        ("make_knock on a public room",
         ("GET", f"{F1}/make_knock/{q(rid)}/{q(carol)}?ver={v}", None), forbidden),
        ("make_leave for another server's user",
         ("GET", f"{F1}/make_leave/{q(rid)}/{q(alice.user_id or '')}", None), forbidden),
        ("send_join signed with another key",
         put(F2 + "/send_join", member(room, carol, "join", key=OTHER_KEY)), forbidden),
        ("send_join with another event's ID",
         put(F2 + "/send_join", join, event_id=room.latest[0]), (400, "M_INVALID_PARAM")),
        ("send_join with a leave", put(F2 + "/send_join", member(room, bob, "leave")),
         (400, "M_INVALID_PARAM")),
        ("send_join for another server's user",
         put(F2 + "/send_join", member(room, "@eve:elsewhere.test", "join")), forbidden),
        ("send_join of another user of the origin",
         put(F2 + "/send_join", member(room, bob, "join", carol)), (400, "M_INVALID_PARAM")),
        ("send_join larger than 65536 bytes", put(F2 + "/send_join", big_join), bad_json),
        ("send_join of a banned user", put(F2 + "/send_join", member(room, frank, "join")),
         forbidden),
        ("make_join for a banned user",
         ("GET", f"{F1}/make_join/{q(rid)}/{q(frank)}?ver={v}", None), forbidden),
        ("send_join to an invite-only room", put(F2 + "/send_join", lonely_join, lonely),
         forbidden),
        ("send_join to another room than the event's",
         put(F2 + "/send_join", join, lonely), (400, "M_INVALID_PARAM")),
        ("send_join without depth",
         put(F2 + "/send_join", (join[0], {k: w for k, w in join[1].items() if k != "depth"})),
         bad_json),
        ("send_leave with a join", put(F2 + "/send_leave", join), (400, "M_INVALID_PARAM")),
        ("send_knock on a public room", put(F1 + "/send_knock", member(room, carol, "knock")),
         forbidden),
        ("invite in a room version unknown here",
         put(F2 + "/invite", invite_dave, body=invite_body(invite_dave[1], "nope")),
         (400, "M_INCOMPATIBLE_ROOM_VERSION")),
        ("invite of another server's user",
         put(F2 + "/invite", (i := member(room, bob, "invite", "@x:elsewhere.test")),
             body=invite_body(i[1])), (400, "M_INVALID_PARAM")),
        ("invite of nobody here",
         put(F2 + "/invite", (i := member(room, bob, "invite", "@nobody:" + me)),
             body=invite_body(i[1])), (404, "M_NOT_FOUND")),
        # What a server must not sign for another: M_INVALID_PARAM (invites-v2.yaml).
        ("invite by another server's user",
         put(F2 + "/invite", (i := member(room, "@eve:elsewhere.test", "invite", dave.user_id)),
             body=invite_body(i[1])), (400, "M_INVALID_PARAM")),
        ("invite signed with another key",
         put(F2 + "/invite", bad_invite_key, body=invite_body(bad_invite_key[1])),
         (400, "M_INVALID_PARAM")),
        ("invite v1 (room versions 1 and 2 only)", put(F1 + "/invite", invite_dave),
         (400, "M_INCOMPATIBLE_ROOM_VERSION")),
        ("invite of alice, who is joined",
         put(F2 + "/invite", (i := member(room, bob, "invite", alice.user_id)),
             body=invite_body(i[1])), forbidden),
        ("invite that is a join",
         put(F2 + "/invite", join, body=invite_body(join[1])), (400, "M_INVALID_PARAM")),
        ("invite to a room this server is in, not allowed by its auth rules",
         put(F2 + "/invite", (i := member(lonely, bob, "invite", dave.user_id)), lonely,
             body=invite_body(i[1])), forbidden),
        ("the same, citing events unknown here",
         put(F2 + "/invite", (i := member(lonely, bob, "invite", dave.user_id,
                                          prev=["$" + "u" * 43])), lonely,
             body=invite_body(i[1])), forbidden),
    ]
    before, lonely_before = await snapshot(alice, rid), await snapshot(alice, lonely.room_id)
    for what, (method, target, body), expected in cases:
        status, answer = await origin.request(http, veche, method, target, body)
        assert error_of(status, answer) == expected, (what, answer)
        assert await snapshot(alice, rid) == before, what
        assert await snapshot(alice, lonely.room_id) == lonely_before, what
    status, sync = await dave.get("sync", params={"timeout": "0"})
    assert status == 200 and sync.get("rooms", {}).get("invite", {}) == {}, sync
    # A membership event whose content hash fails is kept redacted, as any received PDU:
    # carol's join goes in without the display name that was not signed for.
    join_id, join_pdu = tampered(join)
    status, answer = await origin.request(http, veche, "PUT", f"{F2}/send_join/{q(rid)}/{q(join_id)}",
                                          join_pdu)
    assert status == 200 and answer["event"]["content"] == {"membership": "join"}, answer
    status, got = await alice.get(f"rooms/{q(rid)}/state/m.room.member/{q(carol)}")
    assert (status, got) == (200, {"membership": "join"})


async def test_requests_for_what_the_asker_may_not_see(
        veche: ServerProcess, origin: FakeServer, stranger: FakeServer,
        http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    rid = room.room_id
    lonely = await private_room(alice)
    status, body = await alice.put(f"rooms/{q(lonely.room_id)}/send/m.room.message/secret",
                                   {"msgtype": "m.text", "body": "secret"})
    secret = body["event_id"]
    status, body = await alice.put(f"rooms/{q(rid)}/send/m.room.message/open",
                                   {"msgtype": "m.text", "body": "open"})
    shared = body["event_id"]
    lonely_create = lonely.state[("m.room.create", "")]
    bob = origin.user("bob")
    coup_id, coup = room.build(origin, bob, "m.room.power_levels", {"users": {bob: 100}}, "",
                               advance=False)
    assert "rejected" in (await origin.send(http, veche, [coup]))[1]["pdus"][coup_id]["error"]
    forbidden = (403, "M_FORBIDDEN")
    # (asker, method, target, body, expected): a server with nobody in the room, and the
    # origin asking about a room it is not in through a room it is in.
    cases: list[tuple[str, FakeServer, str, str, Any, tuple[int, str]]] = [
        *[(f"stranger: {t.split('/')[4]}", stranger, "GET", t, None, forbidden) for t in (
            f"{F1}/event/{q(shared)}", f"{F1}/state/{q(rid)}?event_id={q(shared)}",
            f"{F1}/state_ids/{q(rid)}?event_id={q(shared)}",
            f"{F1}/event_auth/{q(rid)}/{q(shared)}", f"{F1}/backfill/{q(rid)}?v={q(shared)}&limit=5",
            f"{F1}/timestamp_to_event/{q(rid)}?ts=0&dir=f")],
        ("stranger: get_missing_events", stranger, "POST", f"{F1}/get_missing_events/{q(rid)}",
         {"earliest_events": [], "latest_events": [shared]}, forbidden),
        ("stranger: make_leave", stranger, "GET",
         f"{F1}/make_leave/{q(rid)}/{q(stranger.user('x'))}", None, forbidden),
        ("an event of a room the origin is not in", origin, "GET", f"{F1}/event/{q(secret)}",
         None, forbidden),
        ("state in a room the origin is not in", origin, "GET",
         f"{F1}/state_ids/{q(lonely.room_id)}?event_id={q(secret)}", None, forbidden),
        ("the state at another room's event", origin, "GET",
         f"{F1}/state_ids/{q(rid)}?event_id={q(secret)}", None, (404, "M_NOT_FOUND")),
        ("the full state at another room's event", origin, "GET",
         f"{F1}/state/{q(rid)}?event_id={q(secret)}", None, (404, "M_NOT_FOUND")),
        ("another room's auth chain", origin, "GET", f"{F1}/event_auth/{q(rid)}/{q(secret)}",
         None, (404, "M_NOT_FOUND")),
        ("a rejected event", origin, "GET", f"{F1}/event/{q(coup_id)}", None,
         (404, "M_NOT_FOUND")),
        ("the auth chain of a rejected event", origin, "GET",
         f"{F1}/event_auth/{q(rid)}/{q(coup_id)}", None, (404, "M_NOT_FOUND")),
    ]
    before = await snapshot(alice, rid)
    for what, asker, method, target, body, expected in cases:
        status, answer = await asker.request(http, veche, method, target, body)
        assert error_of(status, answer) == expected, (what, answer)
    # Walks from a room the origin is in never step into another room's events.
    status, back = await origin.request(
        http, veche, "GET", f"{F1}/backfill/{q(rid)}?v={q(secret)}&v={q(shared)}&limit=50")
    assert status == 200
    served = {compute_event_id(p, room.rv) for p in back["pdus"]}
    assert shared in served and secret not in served and lonely_create not in served, served
    status, missing = await origin.request(
        http, veche, "POST", f"{F1}/get_missing_events/{q(rid)}",
        {"earliest_events": [], "latest_events": [secret, shared], "limit": 50})
    assert status == 200
    served = {compute_event_id(p, room.rv) for p in missing["events"]}
    assert secret not in served and lonely_create not in served, served
    assert await snapshot(alice, rid) == before


async def test_hostile_answers_when_filling_a_gap(veche: ServerProcess, origin: FakeServer,
                                                  http: aiohttp.ClientSession) -> None:
    """A message comes after events Veche has not seen; what the origin answers when asked
    for them (/get_missing_events, /state_ids, /event, /event_auth) is garbage, errors,
    forgeries, another room's events, or a state in which bob made himself admin. Never a
    500, and the room's state stays what its own events make it."""
    alice, room = await shared_room(http, veche, origin)
    rid = room.room_id
    bob = origin.user("bob")
    lonely = await private_room(alice)
    status, pl = await alice.get(f"rooms/{q(rid)}/state/m.room.power_levels/")
    coup_id, coup = room.build(origin, bob, "m.room.power_levels",
                               {**pl, "users": {**pl["users"], bob: 100}}, "", advance=False)
    forged_coup_id, forged_coup = room.build(origin, bob, "m.room.power_levels",
                                             {**pl, "users": {**pl["users"], bob: 99}}, "",
                                             advance=False, key=OTHER_KEY)
    _, elsewhere = lonely.build(origin, bob, "m.room.message", {"body": "elsewhere"},
                                advance=False)
    state_before, _ = await snapshot(alice, rid)
    told_state = {**room.state, ("m.room.power_levels", ""): coup_id}

    def answers(hole: dict[str, Any], hole_id: str) -> list[dict[str, tuple[int, Any]]]:
        """Per case: what the origin answers, by path prefix."""
        gme, ids, ev = f"{F1}/get_missing_events/{rid}", f"{F1}/state_ids/{rid}", f"{F1}/event/"
        as_txn = lambda pdu: {"origin": origin.name, "origin_server_ts": 0, "pdus": [pdu]}  # noqa: E731
        return [
            {gme: (500, {"errcode": "M_UNKNOWN"}), ids: (500, {}), ev + hole_id: (500, {})},
            {gme: (200, b"not json"), ids: (200, b"[1, 2"), ev + hole_id: (200, b"\xff")},
            {gme: (200, {"events": "x"}), ids: (200, {"pdu_ids": "x", "auth_chain_ids": 5}),
             ev + hole_id: (200, {"pdus": "x"})},
            {gme: (200, {"events": [elsewhere, {**hole, "signatures": {}}, None, 7]}),
             ids: (200, {"pdu_ids": [None, 5, "$" + "x" * 43, "!room"], "auth_chain_ids": [[]]}),
             ev + hole_id: (200, as_txn(elsewhere))},
            # Bob's coup, told as the state before the hole: validly signed, but not allowed
            # by its auth events, so stored rejected and never in the state.
            {gme: (200, {"events": []}),
             ids: (200, {"pdu_ids": sorted(told_state.values()), "auth_chain_ids": [coup_id]}),
             ev + coup_id: (200, as_txn(coup)), ev + hole_id: (200, as_txn(hole))},
            {gme: (200, {"events": [forged_coup]}),
             ids: (200, {"pdu_ids": [*sorted(room.state.values()), forged_coup_id],
                         "auth_chain_ids": []}),
             ev + forged_coup_id: (200, as_txn(forged_coup)), ev + hole_id: (200, as_txn(hole))},
        ]

    joined = room.latest
    for i in range(6):
        room.latest = joined
        hole_id, hole = room.build(origin, bob, "m.room.message", {"body": f"unseen {i}"})
        last_id, last = room.build(origin, bob, "m.room.message", {"body": f"after {i}"})
        told = answers(hole, hole_id)[i]
        for path, (status, body) in told.items():
            origin.answer(path, body, status)
        status, result = await origin.send(http, veche, [last])
        assert status == 200 and set(result["pdus"]) == {last_id}, (i, result)
        for path in told:
            del origin.server.responses[path]
        state, _ = await snapshot(alice, rid)
        assert state == state_before, i
        status, got = await alice.get(f"rooms/{q(rid)}/state/m.room.power_levels/")
        assert got == pl, i
    # The coup was fetched, stored rejected, and is not served; the forgery was not stored.
    assert origin.asked(f"{F1}/event/{q(coup_id)}")
    assert origin.asked(f"{F1}/event/{q(forged_coup_id)}")
    for event_id in (coup_id, forged_coup_id):
        assert (await origin.request(http, veche, "GET", f"{F1}/event/{q(event_id)}"))[0] == 404
    # Bob is still powerless: his name change is rejected; the room still takes his words.
    room.latest = [(await snapshot(alice, rid))[1][-1]]
    name_id, name = room.build(origin, bob, "m.room.name", {"name": "Bob's room"}, "")
    said_id, said = room.build(origin, bob, "m.room.message", {"body": "still here"})
    status, result = await origin.send(http, veche, [name, said])
    assert "rejected" in result["pdus"][name_id]["error"] and result["pdus"][said_id] == {}
    state, events = await snapshot(alice, rid)
    assert state == state_before and said_id in events and name_id not in events


async def test_redactions_of_what_the_origin_may_not_redact(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    """Bob (power 0) redacts alice's message in another room, the room's join rules and
    its power levels: the redactions are events of the room (the auth rules allow any),
    and take no effect."""
    alice, room = await shared_room(http, veche, origin)
    rid = room.room_id
    bob = origin.user("bob")
    lonely = await private_room(alice)
    status, body = await alice.put(f"rooms/{q(lonely.room_id)}/send/m.room.message/secret",
                                   {"msgtype": "m.text", "body": "secret"})
    secret = body["event_id"]
    state_before, _ = await snapshot(alice, rid)
    targets = [secret, room.state[("m.room.join_rules", "")], room.state[("m.room.power_levels", "")]]
    built = [room.build(origin, bob, "m.room.redaction", {"redacts": t}) for t in targets]
    status, result = await origin.send(http, veche, [p for _, p in built])
    assert (status, result) == (200, {"pdus": {e: {} for e, _ in built}}), result
    status, event = await alice.get(f"rooms/{q(lonely.room_id)}/event/{q(secret)}")
    assert status == 200 and event["content"]["body"] == "secret", event
    for key in (("m.room.join_rules", ""), ("m.room.power_levels", "")):
        status, event = await alice.get(f"rooms/{q(rid)}/event/{q(state_before[key])}")
        assert status == 200 and event["content"] and "redacted_because" not in event.get(
            "unsigned", {}), event
    assert (await snapshot(alice, rid))[0] == state_before
    status, rules = await alice.get(f"rooms/{q(rid)}/state/m.room.join_rules/")
    assert rules == {"join_rule": "public"}

"""Never a 500 from any federation endpoint: a hypothesis fuzz sends properly signed
requests (and some with mangled X-Matrix headers) to every route of the server-server and
key APIs, with fuzzed path parameters, queries and bodies (random JSON, and valid events
with keys replaced or dropped, and re-signed so they reach the deeper checks). Afterwards
the server still works: the fake origin's user joins and talks, a local user sends and
syncs. FUZZ_EXAMPLES=n runs n examples with a random seed instead (a longer hunt)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServerProcess
from tests.federation.fake_origin import F1, FakeServer, SharedRoom, q
from tests.federation.test_receive_pdus import shared_room, texts
from tests.sync_helpers import section
from veche.core.events import compute_event_id, sign_event
from veche.core.federation_auth import sign_request
from veche.http.modules import federation_routes

F2 = "/_matrix/federation/v2"
# Under a minute per backend; derandomized, so CI runs the same examples every time.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3000"))
DERANDOMIZE = "FUZZ_EXAMPLES" not in os.environ
KEY = "/_matrix/key/v2"


# Every route of the server-server and key APIs the fuzz covers: all those Veche serves
# (http/*'s `federation_routes`), and some it may not serve (yet), which must answer 404.
FUZZED = {
    ("GET", F1 + "/version"), ("GET", F1 + "/query/profile"), ("GET", F1 + "/query/directory"),
    ("GET", F1 + "/query/{}"), ("PUT", F1 + "/send/{}"), ("GET", F1 + "/event/{}"),
    ("GET", F1 + "/state/{}"), ("GET", F1 + "/state_ids/{}"), ("GET", F1 + "/event_auth/{}/{}"),
    ("GET", F1 + "/backfill/{}"), ("POST", F1 + "/get_missing_events/{}"),
    ("GET", F1 + "/timestamp_to_event/{}"), ("GET", F1 + "/make_join/{}/{}"),
    ("PUT", F2 + "/send_join/{}/{}"), ("GET", F1 + "/make_leave/{}/{}"),
    ("PUT", F2 + "/send_leave/{}/{}"), ("GET", F1 + "/make_knock/{}/{}"),
    ("PUT", F1 + "/send_knock/{}/{}"), ("PUT", F1 + "/invite/{}/{}"), ("PUT", F2 + "/invite/{}/{}"),
    ("PUT", F1 + "/send_join/{}/{}"), ("PUT", F1 + "/send_leave/{}/{}"),  # gone from the spec
    ("GET", F1 + "/user/devices/{}"), ("POST", F1 + "/user/keys/query"),
    ("POST", F1 + "/user/keys/claim"), ("GET", F1 + "/publicRooms"), ("POST", F1 + "/publicRooms"),
    ("GET", F1 + "/hierarchy/{}"), ("GET", F1 + "/openid/userinfo"),
    ("GET", F1 + "/media/download/{}"), ("GET", F1 + "/media/thumbnail/{}"),
    ("GET", KEY + "/server"), ("GET", KEY + "/server/{}"), ("GET", KEY + "/query/{}"),
    ("POST", KEY + "/query"),
}


def template_of(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_the_fuzz_knows_every_federation_route() -> None:
    """A route added to Veche's federation API without being added to the fuzz fails here."""
    served = {(r.method, template_of(r.path)) for table in federation_routes() for r in table}
    assert served - FUZZED == set()


def _request(veche: ServerProcess, origin: FakeServer, method: str, target: str,
             body: bytes | None, auth: str | None) -> tuple[int, bytes]:
    """`target` sent exactly as given (already percent-encoded), signed by the origin
    unless `auth` replaces the header ("" leaves it out)."""
    if auth is None:
        try:
            content = json.loads(body) if body is not None else None
        except ValueError:
            content = None
        try:
            auth = sign_request(origin.key, origin.name, veche.server_name, method, target, content)
        except ValueError:  # not canonical JSON (Infinity): nothing can sign it; sent anyway
            auth = sign_request(origin.key, origin.name, veche.server_name, method, target, None)
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    req = urllib.request.Request(veche.base_url + target, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=30) | st.sampled_from(["a\x00b", "$", "!", "@"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
PDU_KEYS = ["type", "room_id", "sender", "content", "state_key", "depth", "prev_events",
            "auth_events", "origin_server_ts", "hashes", "signatures", "unsigned", "event_id",
            "membership"]
CONTENT_KEYS = ["membership", "body", "join_authorised_via_users_server", "third_party_invite",
                "users", "join_rule", "reason"]


def mutated(good: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`good` with some keys (top-level or of its content) replaced or dropped."""
    return st.tuples(
        st.dictionaries(st.sampled_from(PDU_KEYS), json_values, max_size=3),
        st.lists(st.sampled_from(PDU_KEYS), max_size=2),
        st.dictionaries(st.sampled_from(CONTENT_KEYS), json_values, max_size=2),
    ).map(lambda t: {k: v for k, v in {**good, **t[0]}.items() if k not in t[1]}
          | ({"content": {**good["content"], **t[2]}} if t[2] else {}))


def resigned(event: dict[str, Any], origin: FakeServer, rv: Any) -> tuple[str, dict[str, Any]]:
    """(its event ID, the event) hashed and signed again by the origin after a mutation, so
    it passes the signature check and reaches the deeper ones; as it is when that fails."""
    try:
        signed = sign_event({k: v for k, v in event.items() if k not in ("hashes", "signatures")},
                            origin.name, origin.key, rv)
        return compute_event_id(signed, rv), signed
    except Exception:  # not signable (say, content not an object): sent unsigned
        return "$" + "x" * 43, event


def as_body(value: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes | None]:
    return st.one_of(value.map(lambda b: json.dumps(b).encode()),
                     st.sampled_from([None, b"", b"{", b"[]", b"\xff\xfe", b'{"a": NaN}',
                                      b'{"a": 1, "a": 2}', b"1" * 400]))


class Raw(str):
    """A path or query part sent as it is, not percent-encoded: broken encodings."""


def encoded(value: str) -> str:
    return value if isinstance(value, Raw) else q(value)


def free_text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size) | st.sampled_from(
        ["", "..", "%", "\x00", "x" * 300, *map(Raw, ["%FF", "%", "%zz", "%2F..", "a%00b",
                                                     "%C3%28", "%ED%A0%80", "+"])])


async def test_fuzz_every_federation_endpoint_never_500(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    rid = room.room_id
    status, _ = await alice.put(f"directory/room/{q('#fuzz:' + veche.server_name)}", {"room_id": rid})
    assert status == 200
    bob, carol = origin.user("bob"), origin.user("carol")
    # A room of the oldest version spoken here too: its events have another format.
    status, body = await alice.post("createRoom", {"preset": "public_chat", "room_version": "10"})
    old = await SharedRoom.of(alice, body["room_id"])
    join_id, old_join = old.build(origin, bob, "m.room.member", {"membership": "join"}, bob)
    assert (await origin.send(http, veche, [old_join]))[1] == {"pdus": {join_id: {}}}

    def events_in(r: SharedRoom) -> list[tuple[SharedRoom, dict[str, Any]]]:
        """A message, and membership events as a real server would send them back after
        make_*: valid, so mutated ones get past the first checks."""
        return [(r, r.build(origin, sender, etype, content, key, advance=False)[1])
                for sender, etype, content, key in [
                    (bob, "m.room.message", {"body": "seed"}, None),
                    (carol, "m.room.member", {"membership": "join"}, carol),
                    (bob, "m.room.member", {"membership": "leave"}, bob),
                    (carol, "m.room.member", {"membership": "knock"}, carol),
                    (bob, "m.room.member", {"membership": "invite"}, alice.user_id)]]

    # Mostly IDs that exist here, so requests get past the first checks.
    bad_ids = st.one_of(st.sampled_from(["$", "!nope:x", "$" + "x" * 43, "@x:y", "!" + "C" * 43,
                                         "#fuzz:" + veche.server_name]), free_text())
    known_events = st.sampled_from([*room.state.values(), room.latest[0], *old.state.values()])
    rooms = st.one_of(st.sampled_from([rid, old.room_id]), st.just(rid), bad_ids)
    event_ids = st.one_of(known_events, known_events, bad_ids)
    ids = st.one_of(rooms, event_ids)
    users = st.one_of(st.sampled_from([bob, carol, alice.user_id]), st.sampled_from([
        "@nobody:" + veche.server_name, "@x:elsewhere.test", "", "@:"]), free_text())
    servers = st.sampled_from([veche.server_name, origin.name, "localhost:1", "", "-",
                               "a" * 300]) | free_text(20)
    versions = st.lists(st.sampled_from([room.rv.identifier] * 3 + ["1", "10", "11", "", "x" * 100]),
                        max_size=3)
    valid = st.sampled_from([*events_in(room), *events_in(old)])
    changed = valid.flatmap(lambda t: mutated(t[1]).map(lambda e: (t[0], e)))
    # (room, event ID, event): re-signed, so at their own ID.
    signed = st.one_of(valid, changed).map(lambda t: (t[0], *resigned(t[1], origin, t[0].rv)))
    pdus = st.one_of(json_values, valid.map(lambda t: t[1]), changed.map(lambda t: t[1]),
                     signed.map(lambda t: t[2]))
    pdu_bodies = as_body(pdus)
    send_bodies = as_body(st.one_of(
        st.fixed_dictionaries({"pdus": st.lists(pdus, max_size=4)}, optional={
            "edus": st.lists(json_values | st.fixed_dictionaries({
                "edu_type": st.sampled_from(["m.typing", "m.receipt", "m.presence",
                                             "m.direct_to_device", "m.device_list_update",
                                             "m.signing_key_update"]),
                "content": json_values}), max_size=3),
            "origin": json_values, "origin_server_ts": json_values}),
        json_values))
    invite_bodies = as_body(st.one_of(
        json_values, pdus,
        st.fixed_dictionaries({"event": pdus}, optional={
            "room_version": st.sampled_from(["1", "10", "12", "x"]) | json_values,
            "invite_room_state": json_values | st.lists(pdus, max_size=2)})))
    v1_invite_bodies = as_body(pdus)
    missing_bodies = as_body(st.tuples(st.fixed_dictionaries({
        "earliest_events": st.lists(event_ids) | json_values,
        "latest_events": st.lists(event_ids, min_size=1) | json_values,
        "limit": st.integers(-5, 100) | json_values, "min_depth": st.integers(-5, 100) | json_values,
    }), st.lists(st.sampled_from(["earliest_events", "latest_events", "limit", "min_depth"]),
                 max_size=1)).map(lambda t: {k: v for k, v in t[0].items() if k not in t[1]}))
    key_criteria = json_values | st.dictionaries(free_text(10), st.fixed_dictionaries(
        {}, optional={"minimum_valid_until_ts": json_values}), max_size=2)
    key_bodies = as_body(st.one_of(json_values, st.fixed_dictionaries({"server_keys": st.one_of(
        json_values, st.dictionaries(servers, key_criteria, max_size=3))})))
    user_key_bodies = as_body(st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "device_keys": json_values | st.dictionaries(users, json_values, max_size=2),
        "one_time_keys": json_values | st.dictionaries(users, json_values, max_size=2)})))
    public_rooms_bodies = as_body(st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "limit": json_values, "since": json_values, "filter": json_values,
        "include_all_networks": json_values, "third_party_instance_id": json_values})))
    numbers = st.sampled_from(["0", "3", "-1", "x", "1e9", "99999999999999999999", ""]) | free_text(8)

    def query(**params: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
        """A query string of these parameters (a list value repeats the key), now and then
        one left out."""
        def render(t: tuple[dict[str, Any], list[str]]) -> str:
            parts = [f"{q(k)}={encoded(x if isinstance(x, str) else str(x))}"
                     for k, v in t[0].items() if k not in t[1]
                     for x in (v if isinstance(v, list) else [v])]
            return "?" + "&".join(parts) if parts else ""
        dropped = st.lists(st.sampled_from(sorted(params)), max_size=1) if params else st.just([])
        return st.tuples(st.fixed_dictionaries(params), dropped).map(render)

    def route(method: str, template: str, body: st.SearchStrategy[bytes | None] | None = None,
              qs: st.SearchStrategy[str] | None = None,
              **parts: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str, bytes | None]]:
        fuzzed.add((method, template_of(template)))
        return st.tuples(st.fixed_dictionaries({k: v.map(encoded) for k, v in parts.items()}),
                         qs if qs is not None else st.just(""),
                         body if body is not None else st.just(None)).map(
            lambda t: (method, template.format(**t[0]) + t[1], t[2]))

    fuzzed: set[tuple[str, str]] = set()
    txn = st.integers(0, 10**9).map(lambda i: f"fuzz{i}") | free_text(20)
    membership = [("make_join", versions), ("make_leave", None), ("make_knock", versions)]
    routes: list[st.SearchStrategy[tuple[str, str, bytes | None]]] = [
        route("PUT", F1 + "/send/{t}", send_bodies, t=txn),
        route("GET", F1 + "/event/{e}", e=event_ids),
        route("GET", F1 + "/state/{r}", qs=query(event_id=event_ids), r=rooms),
        route("GET", F1 + "/state_ids/{r}", qs=query(event_id=event_ids), r=rooms),
        route("GET", F1 + "/event_auth/{r}/{e}", r=rooms, e=event_ids),
        route("GET", F1 + "/backfill/{r}", qs=query(v=st.lists(event_ids, min_size=1, max_size=3), limit=numbers), r=rooms),
        route("POST", F1 + "/get_missing_events/{r}", missing_bodies, r=rooms),
        route("GET", F1 + "/timestamp_to_event/{r}",
              qs=query(ts=numbers, dir=st.sampled_from(["f", "b", "x", ""])), r=rooms),
        *[route("GET", F1 + f"/{name}/{{r}}/{{u}}",
                qs=query(ver=v) if v is not None else None, r=rooms, u=users)
          for name, v in membership],
        *[route("PUT", prefix + f"/{name}/{{r}}/{{e}}", pdu_bodies, r=rooms, e=event_ids)
          for prefix in (F1, F2) for name in ("send_join", "send_leave")],
        route("PUT", F1 + "/send_knock/{r}/{e}", pdu_bodies, r=rooms, e=event_ids),
        # Signed events at their own ID: the membership checks past the first ones.
        st.tuples(st.sampled_from([F1 + "/send_join", F2 + "/send_join", F1 + "/send_leave",
                                   F2 + "/send_leave", F1 + "/send_knock", F1 + "/invite"]),
                  signed).map(lambda t: ("PUT", f"{t[0]}/{q(t[1][0].room_id)}/{q(t[1][1])}",
                                         json.dumps(t[1][2]).encode())),
        st.tuples(signed, st.sampled_from(["", "", "", "1", "10", "12", "x"])).map(
            lambda t: ("PUT", f"{F2}/invite/{q(t[0][0].room_id)}/{q(t[0][1])}", json.dumps({
                "room_version": t[1] or t[0][0].rv.identifier, "event": t[0][2],
                "invite_room_state": []}).encode())),
        route("PUT", F1 + "/invite/{r}/{e}", v1_invite_bodies, r=rooms, e=event_ids),
        route("PUT", F2 + "/invite/{r}/{e}", invite_bodies, r=rooms, e=event_ids),
        route("GET", F1 + "/query/profile", qs=query(user_id=users, field=free_text(12))),
        route("GET", F1 + "/query/directory", qs=query(room_alias=ids)),
        route("GET", F1 + "/query/{k}", qs=query(x=free_text()), k=free_text(12)),
        route("GET", F1 + "/user/devices/{u}", u=users),
        route("POST", F1 + "/user/keys/query", user_key_bodies),
        route("POST", F1 + "/user/keys/claim", user_key_bodies),
        route("GET", F1 + "/publicRooms",
              qs=query(limit=numbers, since=free_text(), include_all_networks=free_text(6),
                       third_party_instance_id=free_text())),
        route("POST", F1 + "/publicRooms", public_rooms_bodies),
        route("GET", F1 + "/hierarchy/{r}", qs=query(suggested_only=free_text(6)), r=rooms),
        route("GET", F1 + "/openid/userinfo", qs=query(access_token=free_text())),
        route("GET", F1 + "/media/download/{m}", qs=query(timeout_ms=numbers), m=free_text(24)),
        route("GET", F1 + "/media/thumbnail/{m}",
              qs=query(width=numbers, height=numbers, method=st.sampled_from(["crop", "scale", "x"]),
                       animated=free_text(6), timeout_ms=numbers), m=free_text(24)),
        route("GET", F1 + "/version"),
        route("GET", KEY + "/server"),
        route("GET", KEY + "/server/{k}", k=free_text(20)),
        route("GET", KEY + "/query/{s}", qs=query(minimum_valid_until_ts=numbers), s=servers),
        route("POST", KEY + "/query", key_bodies),
    ]
    assert fuzzed == FUZZED
    # Most requests are signed as they are sent; some carry a mangled or foreign header.
    good_auth = sign_request(origin.key, origin.name, veche.server_name, "GET", F1 + "/version")
    auths = st.one_of(
        st.none(), st.none(), st.none(), st.none(),
        st.sampled_from(["", "X-Matrix", "X-Matrix ", "Bearer x", good_auth,
                         good_auth.replace("X-Matrix ", "x-matrix "), good_auth + ",sig=\"\"",
                         good_auth.replace('origin="', 'origin="x'), 'X-Matrix origin="\\'])
        | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
        | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(
            lambda s: f'X-Matrix origin="{origin.name}",key="ed25519:k1",{s}'))
    # Which route each request went to, by its template (for the coverage check below).
    answered: Counter[tuple[str, int, int]] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    @given(request=st.one_of([r.map(lambda t, i=i: (i, t)) for i, r in enumerate(routes)]),
           auth=auths)
    def check(request: tuple[int, tuple[str, str, bytes | None]], auth: str | None) -> None:
        index, (method, target, body) = request
        status, raw = _request(veche, origin, method, target, body, auth)
        if status >= 500:
            print(veche.log()[-4000:])  # the traceback, for whoever reads the failure
        assert status < 500, (method, target[:200], (body or b"")[:300], auth, status, raw[:300])
        answered[(method if auth is None else "forged", index, status)] += 1
        if status == 200 and method == "PUT" and target.startswith(F1 + "/send/"):
            assert isinstance(json.loads(raw)["pdus"], dict)

    await asyncio.to_thread(check)
    # Every route was fuzzed with properly signed requests, not only refused ones.
    assert {i for m, i, _ in answered if m != "forged"} == set(range(len(routes)))
    # The server still works: a new user of the origin joins on top of whatever the fuzz
    # made of the room (a valid leave of bob's may have gone in) and talks; alice sends
    # and syncs.
    await room.refresh(alice)
    dave = origin.user("dave")
    join_id, dave_join = room.build(origin, dave, "m.room.member", {"membership": "join"}, dave)
    said_id, said = room.build(origin, dave, "m.room.message", {"body": "after the fuzz"})
    assert await origin.send(http, veche, [dave_join, said]) == (
        200, {"pdus": {join_id: {}, said_id: {}}}), veche.log()[-3000:]
    assert "after the fuzz" in await texts(alice, rid)
    status, body = await alice.put(f"rooms/{q(rid)}/send/m.room.message/after",
                                   {"msgtype": "m.text", "body": "still here"})
    assert status == 200, body
    status, sync = await alice.get("sync", params={"timeout": "0"})
    assert status == 200 and rid in section(sync, "rooms", "join"), sync
    assert "still here" in await texts(alice, rid)


"""Whatever JSON the send, state, to-device and account data endpoints accept comes back intact
(byte for byte, once keys are sorted) through /sync, /messages, /event and the GET endpoints,
to every member who may see it; whatever they refuse is a 4xx with a Matrix errcode."""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServerProcess
from tests.sync_helpers import events_of, room_with, section

EXAMPLES = 40
KEYS = st.sampled_from(["body", "msgtype", "name", "topic", "url", "format", "", "é",
                        "m.relates_to", "m.new_content"]) | st.text(max_size=8)
SCALARS = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
           | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from([2**53, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30])
           | st.text(max_size=12) | st.sampled_from(["m.text", "\x00", "\u2028", "😀", "a\\b\"c"]))
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=14,
)


def _nest(value: Any, depth: int) -> Any:
    for i in range(depth):
        value = {"d": value} if i % 2 else [value]
    return value


# Now and then something nested near or past the depth limit, up to where /sync's wrapping
# used to overflow the encoder.
DEPTHS = st.sampled_from([99, 100, 101, 240, 250, 255]) | st.integers(90, 260)
DEEP = st.tuples(VALUES, DEPTHS).map(lambda t: _nest(*t))
BODIES = st.dictionaries(KEYS, VALUES | DEEP, max_size=5)
_n = itertools.count()


def canonical(value: Any) -> str:
    """Equal only if equal as JSON text: 1 and 1.0, or 10**30 and 1e30, differ."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class Api:
    """Blocking HTTP for one user, for use inside hypothesis' (synchronous) examples."""

    def __init__(self, base: str, client: Any) -> None:
        self.base = base
        self.token = client.access_token
        self.user_id = client.user_id
        self.device_id = client.device_id
        self.since: str | None = None

    def call(self, method: str, path: str, body: Any = None,
             query: dict[str, str] | None = None) -> tuple[int, Any]:
        url = self.base + "/_matrix/client/v3/" + path + ("?" + urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def put(self, path: str, body: Any) -> tuple[int, Any]:
        """PUT, asserting that a refusal is a 4xx with a Matrix errcode."""
        status, resp = self.call("PUT", path, body)
        assert status < 500, (path, status, resp)
        if status != 200:
            assert 400 <= status < 500 and resp["errcode"].startswith("M_"), (path, status, resp)
        return status, resp

    def get(self, path: str, **query: str) -> Any:
        status, resp = self.call("GET", path, query=query)
        assert status == 200, (path, status, resp)
        return resp

    def sync(self) -> dict[str, Any]:
        """What is new since the last sync (which acknowledges to-device messages)."""
        body: dict[str, Any] = self.get("sync", **({"since": self.since} if self.since else {}))
        self.since = body["next_batch"]
        return body


@pytest.fixture
async def apis(homeserver: ServerProcess, make_client: Any) -> tuple[Api, Api, str]:
    alice, bob, room_id = await room_with(make_client, "public_chat")
    a, b = Api(homeserver.base_url, alice), Api(homeserver.base_url, bob)
    a.sync()
    b.sync()
    return a, b, room_id


def run(check: Callable[..., None], **strategies: Any) -> Any:
    """`check` over EXAMPLES generated examples, off the event loop (the server is async)."""
    test = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))(given(**strategies)(check))
    return asyncio.to_thread(test)


def assert_room_event_served(api: Api, room_id: str, event_id: str, content: Any,
                             new: bool) -> None:
    """`api`'s user sees the event with exactly `content` through /event, /messages, /sync."""
    room = quote(room_id)
    event = api.get(f"rooms/{room}/event/{quote(event_id)}")
    assert canonical(event["content"]) == canonical(content)
    chunk = api.get(f"rooms/{room}/messages", dir="b", limit="50")["chunk"]
    served = [e["content"] for e in chunk if e["event_id"] == event_id]
    assert [canonical(c) for c in served] == [canonical(content)]
    timeline = api.sync().get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
    served = [e["content"] for e in timeline.get("events", []) if e["event_id"] == event_id]
    # A state event that changes nothing is not sent again: only new events are in /sync.
    assert [canonical(c) for c in served] == ([canonical(content)] if new else [])


async def test_sent_events_round_trip(apis: tuple[Api, Api, str]) -> None:
    alice, bob, room_id = apis

    def check(event_type: str, content: dict[str, Any]) -> None:
        status, resp = alice.put(
            f"rooms/{quote(room_id)}/send/{quote(event_type)}/rt{next(_n)}", content)
        if status == 200:
            assert_room_event_served(bob, room_id, resp["event_id"], content, new=True)

    await run(check, event_type=st.sampled_from(["m.room.message", "org.example.event"]),
              content=BODIES)


async def test_state_events_round_trip(apis: tuple[Api, Api, str]) -> None:
    alice, bob, room_id = apis
    seen: set[str] = set()

    def check(key: tuple[str, str], content: dict[str, Any]) -> None:
        event_type, state_key = key
        path = f"rooms/{quote(room_id)}/state/{quote(event_type)}/{quote(state_key, safe='')}"
        status, resp = alice.put(path, content)
        if status != 200:
            return
        event_id = resp["event_id"]
        assert_room_event_served(bob, room_id, event_id, content, new=event_id not in seen)
        seen.add(event_id)
        assert canonical(bob.get(path)) == canonical(content)

    keys = (st.tuples(st.just("org.example.state"), st.text(max_size=6))
            | st.tuples(st.sampled_from(["m.room.topic", "m.room.name"]), st.just("")))
    await run(check, key=keys, content=BODIES)


async def test_to_device_messages_round_trip(apis: tuple[Api, Api, str]) -> None:
    alice, bob, _room_id = apis

    def check(content: dict[str, Any]) -> None:
        status, _ = alice.put(f"sendToDevice/org.example.td/rt{next(_n)}",
                              {"messages": {bob.user_id: {bob.device_id: content}}})
        served = [e for e in events_of(bob.sync(), "to_device") if e["type"] == "org.example.td"]
        expected = [{"type": "org.example.td", "sender": alice.user_id, "content": content}]
        assert [canonical(e) for e in served] == ([canonical(e) for e in expected]
                                                  if status == 200 else [])

    await run(check, content=BODIES)


async def test_account_data_round_trips(apis: tuple[Api, Api, str]) -> None:
    alice, _bob, room_id = apis

    def check(in_room: bool, data_type: str, content: dict[str, Any]) -> None:
        where = f"rooms/{quote(room_id)}/" if in_room else ""
        path = f"user/{quote(alice.user_id)}/{where}account_data/{quote(data_type)}"
        status, _ = alice.put(path, content)
        if status != 200:
            return
        assert canonical(alice.get(path)) == canonical(content)
        body = alice.sync()
        where_served = section(body, "rooms", "join")[room_id] if in_room else body
        served = [e["content"] for e in events_of(where_served, "account_data") if e["type"] == data_type]
        assert [canonical(c) for c in served] == [canonical(content)]

    await run(check, in_room=st.booleans(),
              data_type=st.sampled_from(["org.example.a", "org.example.b", "org.example.ü"]),
              content=BODIES)

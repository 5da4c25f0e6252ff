"""Veche and Synapse sharing rooms as their users would: one scenario, run with the room on
either server, in room versions 10, 11 and 12, driven by matrix-nio clients (raw HTTP where
nio has no call, e.g. joins with `via`).

In a room the home side creates (with an alias), its user `owner` and three users of the
other side (`guest`, `guest2`, `guest3`):
invite and join; 50 messages each way in rounds of ten; edits, reactions (one taken back),
a thread and redactions (own and a moderator's); name, topic and power-level changes, then a
topic set by the promoted guest; a join by the remote alias; a restricted join that the home
server authorises (join_authorised_via_users_server); knocks let in, in a room the other
server is in and in one it is not (make_knock); a kick, a ban and leaves; a state event
redacted; a ban and unban of a user who never came; the guest leaving and, invited back,
joining again.

Then what users of both servers see must agree: the 100 messages in the order sent (event
IDs from /messages), the edit and the thread bundled into their events, the reactions from
/relations, redacted content gone, and the room's current state (/state) identical.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    RegisterResponse,
    RoomBanResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomKickResponse,
    RoomLeaveResponse,
    RoomPreset,
    RoomPutStateResponse,
    RoomRedactResponse,
    RoomSendResponse,
    RoomUnbanResponse,
    RoomVisibility,
)

from tests.conftest import ServerProcess
from tests.federation.peers import SynapsePeer
from tests.sync_helpers import events_of, section

pytestmark = pytest.mark.timeout(900)  # the first run installs Synapse

T = TypeVar("T")
ROUNDS, PER_ROUND = 5, 10  # 50 messages from each side


@dataclass
class Side:
    name: str
    base_url: str
    server_name: str
    log: Callable[[], str]


class User:
    """A matrix-nio client on one server, plus raw HTTP for what nio cannot ask."""

    def __init__(self, side: Side, http: aiohttp.ClientSession) -> None:
        self.side = side
        self.http = http
        self.nio = AsyncClient(side.base_url, config=AsyncClientConfig(
            encryption_enabled=False, store_sync_tokens=False, request_timeout=60, max_timeouts=1))

    @property
    def user_id(self) -> str:
        return str(self.nio.user_id)

    async def register(self, prefix: str) -> User:
        name = f"{prefix}{secrets.token_hex(3)}"
        await call(f"register {name} on {self.side.name}",
                   self.nio.register(name, secrets.token_hex(8)), RegisterResponse)
        return self

    async def raw(self, method: str, path: str, body: Any = None,
                  params: dict[str, str] | None = None) -> tuple[int, Any]:
        if not path.startswith("/"):
            path = f"/_matrix/client/v3/{path}"
        async with self.http.request(
                method, self.side.base_url + path, json=body, params=params,
                headers={"Authorization": f"Bearer {self.nio.access_token}"}) as r:
            return r.status, await r.json(content_type=None)

    async def event(self, room_id: str, event_id: str) -> dict[str, Any] | None:
        status, body = await self.raw("GET", f"rooms/{quote(room_id)}/event/{quote(event_id)}")
        return body if status == 200 else None

    async def state(self, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        status, body = await self.raw("GET", f"rooms/{quote(room_id)}/state")
        assert status == 200, body
        return {(e["type"], e["state_key"]): e for e in body}

    async def membership(self, room_id: str, user_id: str) -> str | None:
        status, body = await self.raw(
            "GET", f"rooms/{quote(room_id)}/state/m.room.member/{quote(user_id)}")
        return body.get("membership") if status == 200 else None

    async def timeline(self, room_id: str) -> list[dict[str, Any]]:
        """The whole room history, oldest first, paginating /messages backwards."""
        events: list[dict[str, Any]] = []
        params = {"dir": "b", "limit": "100"}
        while True:
            status, body = await self.raw("GET", f"rooms/{quote(room_id)}/messages", params=params)
            assert status == 200, body
            events.extend(body["chunk"])
            if not body["chunk"] or "end" not in body:
                return list(reversed(events))
            params = {**params, "from": body["end"]}

    async def close(self) -> None:
        await self.nio.close()


async def call(what: str, aw: Awaitable[Any], expect: type[T]) -> T:
    resp = await asyncio.wait_for(aw, 60)
    assert isinstance(resp, expect), f"{what}: {type(resp).__name__} {getattr(resp, 'message', resp)}"
    return resp


async def eventually(check: Callable[[], Awaitable[Any]], what: str, sides: list[Side],
                     timeout: float = 45) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    logs = "\n".join(f"--- {s.name} log\n{s.log()[-3000:]}" for s in sides)
    raise AssertionError(f"timed out waiting for {what}: {last!r}\n{logs}")


async def send(user: User, room_id: str, content: dict[str, Any],
               event_type: str = "m.room.message") -> str:
    resp = await call(f"{user.user_id} sends {event_type}",
                      user.nio.room_send(room_id, event_type, content), RoomSendResponse)
    return str(resp.event_id)


async def put_state(user: User, room_id: str, event_type: str, content: dict[str, Any],
                    state_key: str = "") -> str:
    resp = await call(f"{user.user_id} sets {event_type}",
                      user.nio.room_put_state(room_id, event_type, content, state_key),
                      RoomPutStateResponse)
    return str(resp.event_id)


@pytest.fixture
def sides(veche: ServerProcess, synapse: SynapsePeer) -> dict[str, Side]:
    return {"veche": Side("veche", veche.base_url, veche.server_name, veche.log),
            "synapse": Side("synapse", synapse.client_url, synapse.server_name, synapse.log)}


@pytest.mark.parametrize("version", ["10", "11", "12"])
@pytest.mark.parametrize("home", ["veche", "synapse"])
async def test_users_of_veche_and_synapse_see_the_same_room(
        sides: dict[str, Side], http: aiohttp.ClientSession, home: str, version: str) -> None:
    here = sides[home]
    there = sides["synapse" if home == "veche" else "veche"]
    both = [here, there]
    owner = await User(here, http).register("owner")
    guest, guest2, guest3 = [await User(there, http).register(p) for p in ("guest", "knocker", "visitor")]
    users = [owner, guest, guest2, guest3]
    try:
        await _scenario(owner, guest, guest2, guest3, version, both)
    finally:
        for u in users:
            await u.close()
        import pathlib
        pathlib.Path(f"/tmp/interop-veche-{home}-{version}.log").write_text(sides["veche"].log())


async def _scenario(owner: User, guest: User, guest2: User, guest3: User, version: str,
                    both: list[Side]) -> None:
    here, there = owner.side, guest.side
    alias_local = f"square{secrets.token_hex(3)}"
    created = await call("createRoom", owner.nio.room_create(
        visibility=RoomVisibility.private, alias=alias_local, name="Scenario",
        room_version=version, preset=RoomPreset.public_chat), RoomCreateResponse)
    room = str(created.room_id)

    async def seen_by(user: User, event_id: str) -> bool:
        return await user.event(room, event_id) is not None

    # Invite and join.
    await call("invite", owner.nio.room_invite(room, guest.user_id), RoomInviteResponse)
    # The invite is in the room once the call returns (countersigned by the guest's server).
    assert await owner.membership(room, guest.user_id) == "invite"

    async def invited() -> bool:
        _, sync = await guest.raw("GET", "sync", params={"timeout": "0"})
        return room in sync.get("rooms", {}).get("invite", {})

    await eventually(invited, f"the invite on {there.name}", both)
    await call("join after invite", guest.nio.join(room), JoinResponse)
    await eventually(lambda: _is(owner.membership(room, guest.user_id), "join"),
                     f"the guest's join on {here.name}", both)

    # 50 messages each way, in rounds: each round is seen on the other side before the
    # other side answers, so both servers hold one line of history.
    sent: list[str] = []
    for r in range(ROUNDS):
        for author, reader in ((owner, guest), (guest, owner)):
            for i in range(PER_ROUND):
                sent.append(await send(author, room, {"msgtype": "m.text",
                                                      "body": f"{author.side.name} {r}.{i}"}))
            last = sent[-1]
            await eventually(lambda r=reader, e=last: seen_by(r, e),
                             f"message {last} on {reader.side.name}", both)
    own_msg, guest_msg = sent[0], sent[PER_ROUND]
    # A client starting afresh on either server gets them in that order from /sync.
    for user in (owner, guest):
        status, sync = await user.raw("GET", "sync", params={"timeout": "0", "filter": (
            '{"room": {"timeline": {"limit": 100, "types": ["m.room.message"]}}}')})
        assert status == 200, sync
        synced = [e["event_id"] for e in events_of(section(sync, "rooms", "join")[room], "timeline")]
        assert synced == sent, f"/sync order on {user.side.name}"

    # Edits (each by the message's sender), reactions, a thread, redactions.
    owner_edit = await send(owner, room, {
        "msgtype": "m.text", "body": "* edited", "m.new_content": {"msgtype": "m.text", "body": "edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": own_msg}})
    guest_edit = await send(guest, room, {
        "msgtype": "m.text", "body": "* guest edited",
        "m.new_content": {"msgtype": "m.text", "body": "guest edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": guest_msg}})
    reactions = {
        await send(guest, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": own_msg,
                                                  "key": "👍"}}, "m.reaction"),
        await send(owner, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": own_msg,
                                                  "key": "🎉"}}, "m.reaction"),
    }
    # A reaction taken back: redacted, it leaves the reactions on both servers.
    retracted = await send(guest, room, {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": own_msg, "key": "❤️"}}, "m.reaction")
    root = sent[1]
    thread = [
        await send(guest, room, {"msgtype": "m.text", "body": "in thread (guest)",
                                 "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
    ]
    await eventually(lambda: seen_by(owner, thread[0]), f"the thread reply on {here.name}", both)
    thread.append(await send(owner, room, {"msgtype": "m.text", "body": "in thread (owner)",
                                           "m.relates_to": {"rel_type": "m.thread", "event_id": root}}))
    # The guest redacts their own message; the owner (a moderator) redacts another of theirs.
    redacted = {sent[PER_ROUND + 1]: guest, sent[PER_ROUND + 2]: owner, retracted: guest}
    redactions = {}
    for target, by in redacted.items():
        resp = await call("redact", by.nio.room_redact(room, target, "scenario"), RoomRedactResponse)
        redactions[target] = str(resp.event_id)

    # Name, topic and power levels; then the promoted guest sets the topic.
    await put_state(owner, room, "m.room.name", {"name": "Scenario, renamed"})
    await put_state(owner, room, "m.room.topic", {"topic": f"set on {here.name}"})
    _, levels = await owner.raw("GET", f"rooms/{quote(room)}/state/m.room.power_levels/")
    levels["users"][guest.user_id] = 50
    pl_id = await put_state(owner, room, "m.room.power_levels", levels)
    await eventually(lambda: seen_by(guest, pl_id), f"the power levels on {there.name}", both)
    await put_state(guest, room, "m.room.topic", {"topic": f"set on {there.name}"})
    # The promoted guest (a moderator now) redacts a state event of the owner's: the
    # room's current state loses its content on both servers.
    avatar_id = await put_state(owner, room, "m.room.avatar", {"url": "mxc://example.org/abc"})
    await eventually(lambda: seen_by(guest, avatar_id), f"the avatar on {there.name}", both)
    await call("redact state", guest.nio.room_redact(room, avatar_id, "no"), RoomRedactResponse)

    # A user of the other server joins by the room's alias (asked of the home server).
    alias = f"#{alias_local}:{here.server_name}"
    status, body = await guest3.raw("POST", f"join/{quote('#nothing-here:' + here.server_name)}", {})
    assert (status, body.get("errcode")) == (404, "M_NOT_FOUND"), body
    status, body = await guest3.raw("POST", f"join/{quote(alias)}", {})
    assert (status, body.get("room_id")) == (200, room), (body, there.log()[-3000:])
    await eventually(lambda: _is(owner.membership(room, guest3.user_id), "join"),
                     f"the join by alias on {here.name}", both)

    # A restricted room for members of the first: guest3's server is not in it, so the home
    # server picks one of its users who may invite to vouch for the join.
    created = await call("createRoom restricted", owner.nio.room_create(
        name="Members only", room_version=version, power_level_override={"invite": 50},
        initial_state=[{
            "type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted",
                        "allow": [{"type": "m.room_membership", "room_id": room}]}}]),
        RoomCreateResponse)
    restricted = str(created.room_id)
    status, body = await guest3.raw("POST", f"join/{quote(restricted)}", {},
                                    params={"server_name": here.server_name, "via": here.server_name})
    assert status == 200, (body, there.log()[-3000:], here.log()[-3000:])
    for user in (owner, guest3):
        content = await eventually(lambda u=user: _member_content(u, restricted, guest3.user_id),
                                   f"guest3's restricted join on {user.side.name}", both)
        assert content.get("join_authorised_via_users_server") == owner.user_id, content
    # Now the other server is in the room, but none of its users there may invite: the
    # guest's join must still be vouched for by the home server.
    _, levels = await owner.raw("GET", f"rooms/{quote(restricted)}/state/m.room.power_levels/")
    assert levels["invite"] == 50, levels
    status, body = await guest.raw("POST", f"join/{quote(restricted)}", {},
                                   params={"server_name": here.server_name, "via": here.server_name})
    assert status == 200, (body, there.log()[-3000:], here.log()[-3000:])
    for user in (owner, guest):
        content = await eventually(lambda u=user: _member_content(u, restricted, guest.user_id),
                                   f"the guest's restricted join on {user.side.name}", both)
        assert content.get("join_authorised_via_users_server") == owner.user_id, content
    resp = await call("leave restricted", guest3.nio.room_leave(restricted), RoomLeaveResponse)
    await eventually(lambda: _is(owner.membership(restricted, guest3.user_id), "leave"),
                     f"guest3's leave on {here.name}", both)

    # A remote knock: no user of the other server is in this room, so guest2's server asks
    # the home server to make the event (make_knock / send_knock); let in, guest2 joins.
    created = await call("createRoom knock", owner.nio.room_create(
        name="Knock first", room_version=version, initial_state=[{
            "type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]),
        RoomCreateResponse)
    knock_room = str(created.room_id)
    status, body = await guest2.raw("POST", f"knock/{quote(knock_room)}", {"reason": "hello"},
                                    params={"server_name": here.server_name, "via": here.server_name})
    assert (status, body) == (200, {"room_id": knock_room}), (body, there.log()[-3000:], here.log()[-3000:])
    await eventually(lambda: _is(owner.membership(knock_room, guest2.user_id), "knock"),
                     f"the remote knock on {here.name}", both)
    _, sync = await guest2.raw("GET", "sync", params={"timeout": "0"})
    shown = {e["type"]: e["content"] for e in section(sync, "rooms", "knock")[knock_room]["knock_state"]["events"]}
    assert shown["m.room.name"] == {"name": "Knock first"}, shown
    await call("accept the knock", owner.nio.room_invite(knock_room, guest2.user_id), RoomInviteResponse)

    async def guest2_joins_knock_room() -> bool:
        return isinstance(await guest2.nio.join(knock_room), JoinResponse)

    await eventually(guest2_joins_knock_room, f"guest2 let in on {there.name}", both)
    await eventually(lambda: _is(owner.membership(knock_room, guest2.user_id), "join"),
                     f"guest2's join of the knock room on {here.name}", both)

    # Knocking where the other server is in the room (its own event, sent to the home
    # server): the owner opens the room to knocks, guest2 knocks and is let in.
    rules_id = await put_state(owner, room, "m.room.join_rules", {"join_rule": "knock"})
    await eventually(lambda: seen_by(guest, rules_id), f"the join rules on {there.name}", both)
    status, body = await guest2.raw("POST", f"knock/{quote(room)}", {"reason": "let me in"},
                                    params={"server_name": here.server_name, "via": here.server_name})
    assert status == 200, (body, there.log()[-3000:], here.log()[-3000:])
    await eventually(lambda: _is(owner.membership(room, guest2.user_id), "knock"),
                     f"the knock on {here.name}", both)
    await call("invite after knock", owner.nio.room_invite(room, guest2.user_id), RoomInviteResponse)

    async def guest2_joins() -> bool:
        resp = await guest2.nio.join(room)
        return isinstance(resp, JoinResponse)

    await eventually(guest2_joins, f"guest2 let in on {there.name}", both)
    await eventually(lambda: _is(owner.membership(room, guest2.user_id), "join"),
                     f"guest2's join on {here.name}", both)

    # A kick and a ban.
    await call("kick", owner.nio.room_kick(room, guest2.user_id, "enough"), RoomKickResponse)
    await call("ban", owner.nio.room_ban(room, guest3.user_id, "spam"), RoomBanResponse)
    # A user of the other server who never came: banned ahead, then unbanned.
    stranger = f"@stranger{secrets.token_hex(2)}:{there.server_name}"
    await call("ban ahead", owner.nio.room_ban(room, stranger), RoomBanResponse)
    await call("unban", owner.nio.room_unban(room, stranger), RoomUnbanResponse)
    last = await send(owner, room, {"msgtype": "m.text", "body": "the end"})
    await eventually(lambda: seen_by(guest, last), f"the last message on {there.name}", both)

    # --- What users see, on both servers.
    diff: dict[str, Any] = {}
    for _ in range(60):
        diff = _diff(await owner.state(room), await guest.state(room))
        if not diff:
            break
        await asyncio.sleep(0.5)
    assert not diff, f"current state differs ({here.name}, {there.name}): {diff}"
    state = await owner.state(room)
    assert state[("m.room.topic", "")]["content"]["topic"] == f"set on {there.name}"
    assert state[("m.room.name", "")]["content"]["name"] == "Scenario, renamed"
    assert state[("m.room.power_levels", "")]["content"]["users"][guest.user_id] == 50
    assert state[("m.room.join_rules", "")]["content"]["join_rule"] == "knock"
    members = {k[1]: e["content"]["membership"] for k, e in state.items() if k[0] == "m.room.member"}
    assert members == {owner.user_id: "join", guest.user_id: "join", guest2.user_id: "leave",
                       guest3.user_id: "ban", stranger: "leave"}
    assert state[("m.room.avatar", "")]["content"] == {}

    for user in (owner, guest):
        texts = [e["event_id"] for e in await user.timeline(room)
                 if e["type"] == "m.room.message" and e["event_id"] in set(sent)]
        assert texts == sent, f"history order on {user.side.name}"

        edited = await user.event(room, own_msg)
        assert edited is not None
        assert edited["unsigned"]["m.relations"]["m.replace"]["event_id"] == owner_edit, edited
        edited = await user.event(room, guest_msg)
        assert edited is not None
        assert edited["unsigned"]["m.relations"]["m.replace"]["event_id"] == guest_edit, edited

        status, body = await user.raw("GET", f"/_matrix/client/v1/rooms/{quote(room)}/relations/{quote(own_msg)}/m.annotation")
        assert status == 200, body
        assert {e["event_id"] for e in body["chunk"]} == reactions, user.side.name

        status, body = await user.raw("GET", f"/_matrix/client/v1/rooms/{quote(room)}/threads")
        assert status == 200, body
        assert [e["event_id"] for e in body["chunk"]] == [root], (user.side.name, body)
        threaded = await user.event(room, root)
        assert threaded is not None
        summary = threaded["unsigned"]["m.relations"]["m.thread"]
        assert (summary["count"], summary["latest_event"]["event_id"]) == (2, thread[-1]), summary
        assert summary["current_user_participated"] is True

        for target, redaction in redactions.items():
            gone = await user.event(room, target)
            assert gone is not None
            assert gone["content"] == {}, (user.side.name, gone)
            assert gone["unsigned"]["redacted_because"]["event_id"] == redaction

    # The kicked and the banned see the room among those they left, and why.
    for user, membership in ((guest2, "leave"), (guest3, "ban")):
        await eventually(lambda u=user, m=membership: _left_as(u, room, m),
                         f"{membership} in {user.user_id}'s /sync", both)

    # The guest leaves (the last of their server in the room), both servers agree; while
    # away the room moves on; invited back, the guest joins again and talks.
    await call("leave", guest.nio.room_leave(room), RoomLeaveResponse)
    await eventually(lambda: _is(owner.membership(room, guest.user_id), "leave"),
                     f"the guest's leave on {here.name}", both)
    await put_state(owner, room, "m.room.topic", {"topic": "while you were away"})
    await send(owner, room, {"msgtype": "m.text", "body": "missed this"})
    await call("invite back", owner.nio.room_invite(room, guest.user_id), RoomInviteResponse)
    await eventually(invited, f"the second invite on {there.name}", both)
    await call("join again", guest.nio.join(room), JoinResponse)
    back = await send(guest, room, {"msgtype": "m.text", "body": "back again"})
    await eventually(lambda: seen_by(owner, back), f"the returning guest's message on {here.name}", both)
    diff = _diff(await owner.state(room), await guest.state(room))
    assert not diff, f"current state differs after the rejoin: {diff}"
    assert (await guest.state(room))[("m.room.topic", "")]["content"] == {"topic": "while you were away"}


async def _left_as(user: User, room_id: str, membership: str) -> bool:
    _, sync = await user.raw("GET", "sync", params={
        "timeout": "0", "filter": '{"room": {"include_leave": true}}'})
    left = sync.get("rooms", {}).get("leave", {}).get(room_id)
    if not left:
        return False
    events = events_of(left, "timeline") + left.get("state", {}).get("events", [])
    return any(e["type"] == "m.room.member" and e["state_key"] == user.user_id
               and e["content"]["membership"] == membership and e["sender"] != user.user_id
               for e in events)


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def _member_content(user: User, room_id: str, member: str) -> dict[str, Any] | None:
    status, content = await user.raw(
        "GET", f"rooms/{quote(room_id)}/state/m.room.member/{quote(member)}")
    return content if status == 200 and content.get("membership") == "join" else None


def _diff(a: dict[tuple[str, str], dict[str, Any]],
          b: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """(type|state_key) -> (event ID, content) on each side, where they differ."""
    def view(e: dict[str, Any] | None) -> Any:
        return e and (e["event_id"], e["content"])

    return {f"{k[0]}|{k[1]}": (view(a.get(k)), view(b.get(k)))
            for k in set(a) | set(b) if view(a.get(k)) != view(b.get(k))}

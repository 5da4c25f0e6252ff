"""Pushers and mobile push: pushers are stored as the spec says; with push enabled, a message
that notifies a member reaches the gateway their app registered (in the Push Gateway API's
shape, full or event_id_only), the sender's own messages and muted rooms push nothing, a
rejected push key is dropped; with push off, or a gateway on a refused address, nothing is
sent."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
import yaml
from aiohttp import web

from tests.conftest import Client
from tests.spec_schema import SPEC_ROOT
from tests.sync_helpers import room_with, send

SPEC = SPEC_ROOT / "data" / "api"
NOTIFY_SCHEMA = yaml.safe_load((SPEC / "push-gateway" / "push_notifier.yaml").read_text())[
    "paths"]["/notify"]["post"]["requestBody"]["content"]["application/json"]["schema"]


class Gateway:
    """A push gateway on loopback that records what it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.reject: set[str] = set()
        self.arrived = asyncio.Event()

    async def notify(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(body)
        self.arrived.set()
        keys = [d["pushkey"] for d in body["notification"]["devices"]]
        return web.json_response({"rejected": [k for k in keys if k in self.reject]})

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        await asyncio.wait_for(self.arrived.wait(), timeout)
        self.arrived.clear()
        return self.received[-1]["notification"]  # type: ignore[no-any-return]


@pytest.fixture
async def gateway() -> Any:
    gw = Gateway()
    app = web.Application()
    app.router.add_post("/_matrix/push/v1/notify", gw.notify)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gw.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/_matrix/push/v1/notify"  # type: ignore[attr-defined,union-attr]
    yield gw
    await runner.cleanup()


def pusher(url: str, pushkey: str = "key-1", **extra: Any) -> dict[str, Any]:
    return {"kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
            "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
            "data": {"url": url, **extra.pop("data", {})}, **extra}


async def test_pusher_set_get_replace_delete(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    url = "https://push.example.org/_matrix/push/v1/notify"
    assert (await alice.post("pushers/set", pusher(url, profile_tag="tag")))[0] == 200
    status, body = await alice.get("pushers")
    assert status == 200
    (got,) = body["pushers"]
    assert got["pushkey"] == "key-1" and got["data"] == {"url": url} and got["profile_tag"] == "tag"
    assert got["kind"] == "http" and got["lang"] == "en" and got["app_display_name"] == "Example"
    # Setting it again replaces it; another push key is another pusher.
    await alice.post("pushers/set", pusher(url, device_display_name="Tablet"))
    await alice.post("pushers/set", pusher(url, "key-2"))
    assert [(p["pushkey"], p["device_display_name"]) for p in (await alice.get("pushers"))[1]["pushers"]] \
        == [("key-1", "Tablet"), ("key-2", "Phone")]
    # The same app and key for bob takes it from alice, unless bob appends.
    await bob.post("pushers/set", pusher(url, "key-2", append=True))
    assert len((await alice.get("pushers"))[1]["pushers"]) == 2
    await bob.post("pushers/set", pusher(url, "key-2"))
    assert [p["pushkey"] for p in (await alice.get("pushers"))[1]["pushers"]] == ["key-1"]
    await alice.post("pushers/set", {"kind": None, "app_id": "org.example.app", "pushkey": "key-1"})
    assert (await alice.get("pushers"))[1] == {"pushers": []}
    # Logging out removes the device's pushers.
    assert (await bob.post("logout", {}))[0] == 200
    carol = await make_client().register()
    assert (await carol.get("pushers"))[1] == {"pushers": []}

    for bad, errcode in ((pusher(url, kind="email"), "M_INVALID_PARAM"),
                         ({"kind": "http", "app_id": "a", "pushkey": "k"}, "M_MISSING_PARAM"),
                         (pusher("https://push.example.org/notify"), "M_INVALID_PARAM"),
                         (pusher("file:///_matrix/push/v1/notify"), "M_INVALID_PARAM"),
                         (pusher(url, data={"format": "full"}), "M_BAD_JSON"),
                         (pusher(url, pushkey=""), "M_BAD_JSON"),
                         (pusher(url, lang=5), "M_BAD_JSON"),
                         ({"app_id": "a", "pushkey": "k"}, "M_MISSING_PARAM")):
        status, out = await carol.post("pushers/set", bad)
        assert (status, out.get("errcode")) == (400, errcode), bad
    assert (await carol.get("pushers"))[1] == {"pushers": []}


async def test_pushes_reach_the_gateway(make_server: Any, http: Any, gateway: Gateway) -> None:
    srv = make_server({"VECHE_PUSH__ENABLED": "true",
                       "VECHE_PUSH__IP_RANGE_ALLOWLIST": '["127.0.0.1/32"]'}, dev=True)
    alice, bob, room = await room_with(lambda: Client(http, srv.base_url))
    assert (await alice.put(f"profile/{quote(alice.user_id)}/displayname", {"displayname": "Alice A"}))[0] == 200
    assert (await alice.put(f"rooms/{quote(room)}/state/m.room.name", {"name": "Plans"}))[0] == 200
    gateway.received.clear()
    assert (await bob.post("pushers/set", pusher(gateway.url, data={"custom": 1})))[0] == 200

    event_id = await send(alice, room, "lunch at noon?")
    note = await gateway.next()
    jsonschema.validate({"notification": note}, NOTIFY_SCHEMA)
    assert note["event_id"] == event_id and note["room_id"] == room
    assert note["type"] == "m.room.message" and note["sender"] == alice.user_id
    assert note["sender_display_name"] == "Alice A" and note["room_name"] == "Plans"
    assert note["content"]["body"] == "lunch at noon?" and note["prio"] == "high"
    assert note["counts"] == {"unread": 1}
    (device,) = note["devices"]
    assert device["pushkey"] == "key-1" and device["data"] == {"custom": 1}
    assert device["tweaks"] == {"sound": "default"}  # a one-to-one room rings

    # Bob's own message, and a room bob muted, push nothing.
    await send(bob, room, "sure")
    assert (await bob.put(f"pushrules/global/room/{quote(room)}", {"actions": []}))[0] == 200
    await send(alice, room, "muted now")
    await asyncio.sleep(1.5)
    assert len(gateway.received) == 1
    assert (await bob.delete(f"pushrules/global/room/{quote(room)}"))[0] == 200

    # event_id_only: no content, sender or room name leaves the server.
    await bob.post("pushers/set", pusher(gateway.url, data={"format": "event_id_only"}))
    event_id = await send(alice, room, "secret plans")
    note = await gateway.next()
    jsonschema.validate({"notification": note}, NOTIFY_SCHEMA)
    assert set(note) == {"event_id", "room_id", "counts", "devices", "prio"}
    assert note["event_id"] == event_id and "secret" not in str(gateway.received[-1])

    # A push key the gateway rejects is dropped.
    gateway.reject.add("key-1")
    await send(alice, room, "anyone?")
    await gateway.next()
    for _ in range(50):
        if (await bob.get("pushers"))[1]["pushers"] == []:
            break
        await asyncio.sleep(0.1)
    assert (await bob.get("pushers"))[1] == {"pushers": []}


async def test_an_invite_reaches_the_invitees_phone(make_server: Any, http: Any,
                                                    gateway: Gateway) -> None:
    srv = make_server({"VECHE_PUSH__ENABLED": "true",
                       "VECHE_PUSH__IP_RANGE_ALLOWLIST": '["127.0.0.1/32"]'}, dev=True)
    alice = await Client(http, srv.base_url).register()
    carol = await Client(http, srv.base_url).register()
    status, room = await alice.post("createRoom", {"preset": "private_chat"})
    assert status == 200
    assert (await carol.post("pushers/set", pusher(gateway.url)))[0] == 200
    status, _ = await alice.post(f"rooms/{quote(room['room_id'])}/invite", {"user_id": carol.user_id})
    assert status == 200
    note = await gateway.next()
    jsonschema.validate({"notification": note}, NOTIFY_SCHEMA)
    assert note["type"] == "m.room.member" and note["room_id"] == room["room_id"]
    assert note["content"]["membership"] == "invite" and note["user_is_target"] is True
    assert note["devices"][0]["tweaks"] == {"sound": "default"}


async def test_nothing_is_pushed_when_off_or_refused(make_client: Any, make_server: Any, http: Any,
                                                     gateway: Gateway) -> None:
    # The shared server has push off (the default); this one refuses loopback gateways.
    guarded = make_server({"VECHE_PUSH__ENABLED": "true"}, dev=True)
    for factory in (make_client, lambda: Client(http, guarded.base_url)):
        alice, bob, room = await room_with(factory)
        assert (await bob.post("pushers/set", pusher(gateway.url)))[0] == 200
        await send(alice, room, "hello?")
    await asyncio.sleep(2)
    assert gateway.received == []

"""An encrypted room across two servers: matrix-nio (vodozemac) users on one, a
matrix-js-sdk (Rust crypto) user on the other (`e2ee.mjs federated`).

    result = await run_federated(nio_url, js_url, store_dir, run_js)

Steps, paced by messages in the room:
1. nio-1 creates an encrypted room and invites the JS user, who joins from the other server;
   each decrypts the other's first message (js-1, nio-1).
2. The JS user adds device js-2 and says so (js2-ready:<device>); nio-1 waits until it knows
   that device (a device list update crossed the servers), then sends nio-2, which js-2
   must decrypt.
3. The nio user adds device nio-2 and says so (nio2-ready:<device>); js-1 waits until it knows
   it, then sends js-3, which nio-2 must decrypt.
4. nio-1 asks js-1 (m.room_key_request, to-device across the servers) for the key of js-1's
   first message; js-1 answers with an m.forwarded_room_key (olm, to-device back).
   nio accepts forwarded keys only from its own verified devices, so what is checked is
   that the key arrived and decrypted as an olm message (`forwarded`).
5. nio-1 says bye; both JS devices decrypt it and the JS side ends.

Returns {"secrets": [...], "nio_user", "nio_token", "js": <the JS result>, "forwarded": n}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    MatrixRoom,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    ToDeviceResponse,
)
from nio.event_builders import ToDeviceMessage

from tests.integration.nio_e2ee import ENCRYPTION, JS_PASSWORD
from tests.integration.nio_scenario import ScenarioError, call, check, register, wait_for

WAIT_S = 90.0
JsRunner = Callable[[dict[str, Any]], Coroutine[Any, Any, tuple[int, str, str]]]


class NioDevice:
    """A logged-in nio device syncing in the background, keeping what it decrypted."""

    def __init__(self, base_url: str, user_id: str, store: str) -> None:
        cfg = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False,
                                request_timeout=60, max_timeouts=1, max_limit_exceeded=0)
        self.client = AsyncClient(base_url, user_id, store_path=store, config=cfg)
        self.received: list[RoomMessageText] = []
        self.task: asyncio.Task[Any] | None = None

        async def on_text(room: MatrixRoom, event: RoomMessageText) -> None:
            self.received.append(event)

        self.client.add_event_callback(on_text, RoomMessageText)

    async def start(self, password: str, name: str) -> NioDevice:
        await call(f"{name} login", self.client.login(password, device_name=name), LoginResponse)
        check(self.client.olm is not None, f"{name} has no olm machine")
        self.task = asyncio.create_task(self.client.sync_forever(timeout=1000, full_state=True))
        await wait_for(f"{name} uploads its keys", lambda: not self.client.should_upload_keys, WAIT_S)
        return self

    def alive(self) -> bool:
        """False, or ScenarioError if the sync loop stopped (for `alive() or ...` waits)."""
        if self.task is not None and self.task.done():
            raise ScenarioError(f"a nio sync loop stopped: {self.task.exception()!r}")
        return False

    def decrypted(self, sender: str, body: str) -> RoomMessageText | None:
        self.alive()
        return next((e for e in self.received if e.sender == sender and e.body == body
                     and e.decrypted), None)

    async def send(self, room_id: str, body: str) -> None:
        await call(f"nio sends {body!r}", self.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True), RoomSendResponse)

    def knows_device(self, user_id: str, device_id: str) -> bool:
        self.alive()
        return any(d.id == device_id for d in self.client.device_store.active_user_devices(user_id))

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        await self.client.close()


async def run_federated(nio_url: str, js_url: str, store_dir: str, run_js: JsRunner) -> dict[str, Any]:
    tag = secrets.token_hex(4)
    nio_pw = secrets.token_hex(8)
    nio_user = await register(nio_url, f"nio{tag}", nio_pw)
    js_user = await register(js_url, f"js{tag}", JS_PASSWORD)
    nio1 = NioDevice(nio_url, nio_user, f"{store_dir}/1")
    nio2 = NioDevice(nio_url, nio_user, f"{store_dir}/2")
    js_task: asyncio.Task[tuple[int, str, str]] | None = None
    forwarded: list[tuple[str, str]] = []
    try:
        os.makedirs(f"{store_dir}/1")
        os.makedirs(f"{store_dir}/2")
        await nio1.start(nio_pw, "nio-1")
        olm = nio1.client.olm
        assert olm is not None
        accept = olm._should_accept_forward

        def spy(sender: str, sender_key: str, event: Any) -> bool:
            forwarded.append((sender, event.session_id))
            return bool(accept(sender, sender_key, event))

        olm._should_accept_forward = spy
        room = await call("nio creates an encrypted room", nio1.client.room_create(
            invite=[js_user], initial_state=[ENCRYPTION], name="across servers"), RoomCreateResponse)
        room_id = room.room_id
        js_task = asyncio.create_task(run_js({"js_user": js_user, "nio_user": nio_user,
                                              "room_id": room_id, "tag": tag}))

        def js_alive() -> bool:
            """False, or ScenarioError if either side stopped (for `js_alive() or ...`)."""
            nio1.alive()
            if js_task is not None and js_task.done():
                rc, _out, err = js_task.result()
                raise ScenarioError(f"the js side ended early ({rc}):\n{err[-3000:]}")
            return False

        def js_ready() -> bool:
            js_alive()
            r = nio1.client.rooms.get(room_id)
            joined = r is not None and js_user in r.users and js_user not in r.invited_users
            return joined and bool(list(nio1.client.device_store.active_user_devices(js_user)))

        await wait_for("the js user joined and nio knows its device", js_ready, WAIT_S)
        sent = [f"nio-1-{tag}"]
        await nio1.send(room_id, sent[0])
        first = await wait_for("nio-1 decrypts js-1", lambda: js_alive() or nio1.decrypted(
            js_user, f"js-1-{tag}"), WAIT_S)

        # 2. The JS side's new device.
        ready = await wait_for("nio-1 decrypts js2-ready", lambda: js_alive() or next(
            (e for e in nio1.received if e.sender == js_user and e.body.startswith("js2-ready:")),
            None), WAIT_S)
        js2 = ready.body.split(":")[1]
        await wait_for(f"nio-1 learns of js-2 ({js2})", lambda: js_alive() or nio1.knows_device(
            js_user, js2), WAIT_S)
        sent.append(f"nio-2-{tag}")
        await nio1.send(room_id, sent[1])

        # 3. The nio side's new device.
        await nio2.start(nio_pw, "nio-2")
        await wait_for("nio-2 has the room", lambda: room_id in nio2.client.rooms, WAIT_S)
        sent.append(f"nio2-ready:{nio2.client.device_id}:{tag}")
        await nio1.send(room_id, sent[2])
        await wait_for("nio-2 decrypts js-3", lambda: js_alive() or nio2.alive() or nio2.decrypted(
            js_user, f"js-3-{tag}"), WAIT_S + 30)

        # 4. A key request to the JS user's devices, and the forwarded key back.
        request = ToDeviceMessage("m.room_key_request", js_user, "*", {
            "action": "request", "requesting_device_id": nio1.client.device_id,
            "request_id": secrets.token_hex(8),
            "body": {"algorithm": "m.megolm.v1.aes-sha2", "room_id": room_id,
                     "sender_key": first.sender_key, "session_id": first.session_id}})
        await call("nio-1 sends a key request", nio1.client.to_device(request), ToDeviceResponse)
        await wait_for("a forwarded room key from the js user reaches nio-1",
                       lambda: js_alive() or any(s == js_user and sid == first.session_id
                                                 for s, sid in forwarded), 60)

        # 5. Done.
        sent.append(f"bye-{tag}")
        await nio1.send(room_id, sent[3])
        rc, out, err = await asyncio.wait_for(js_task, WAIT_S + 60)
        check(rc == 0, f"the js side failed ({rc}):\n{err[-3000:]}")
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        check(len(lines) == 1, f"js printed no result line: {out[-500:]}")
        js = json.loads(lines[0])
        return {"secrets": sent + js["secrets"], "js": js, "forwarded": len(forwarded),
                "nio_user": nio_user, "nio_token": nio1.client.access_token, "room_id": room_id}
    finally:
        if js_task is not None and not js_task.done():
            js_task.cancel()
            with contextlib.suppress(BaseException):
                await js_task
        await nio1.close()
        await nio2.close()

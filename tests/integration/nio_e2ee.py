"""matrix-nio (with encryption, vodozemac) and matrix-js-sdk (Rust crypto) in one encrypted room.

    secrets, plain = await run_interop(base_url, store_dir, run_js)

nio registers both users, creates an encrypted room and invites the JS user; `run_js(state)`
starts `e2ee.mjs interop` with that state, which joins, sends a message and waits for nio's.
Each side must decrypt the other's message. Returns the plaintexts sent encrypted and a control
message sent in an unencrypted room. Every wait is bounded; failures raise ScenarioError.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    MatrixRoom,
    MegolmEvent,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
)

from tests.integration.nio_scenario import ScenarioError, call, check, register, wait_for

JS_PASSWORD = "correct horse battery e2ee"  # e2ee.mjs logs in with this
WAIT_S = 90.0
ENCRYPTION = {"type": "m.room.encryption", "state_key": "",
              "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
JsRunner = Callable[[dict[str, Any]], Awaitable[tuple[int, str, str]]]


async def run_interop(base_url: str, store_dir: str, run_js: JsRunner) -> tuple[list[str], list[str]]:
    tag = secrets.token_hex(4)
    nio_pw = secrets.token_hex(8)
    nio_user = await register(base_url, f"nio{tag}", nio_pw)
    js_user = await register(base_url, f"js{tag}", JS_PASSWORD)

    cfg = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False,
                            request_timeout=60, max_timeouts=1, max_limit_exceeded=0)
    client = AsyncClient(base_url, nio_user, store_path=store_dir, config=cfg)
    received: list[RoomMessageText] = []
    undecrypted: list[MegolmEvent] = []

    async def on_text(room: MatrixRoom, event: RoomMessageText) -> None:
        received.append(event)

    async def on_megolm(room: MatrixRoom, event: MegolmEvent) -> None:
        undecrypted.append(event)

    client.add_event_callback(on_text, RoomMessageText)
    client.add_event_callback(on_megolm, MegolmEvent)
    sync_task: asyncio.Task[Any] | None = None
    js_task: asyncio.Task[tuple[int, str, str]] | None = None
    try:
        await call("nio login", client.login(nio_pw, device_name="nio-e2ee"), LoginResponse)
        check(client.olm is not None, "nio has no olm machine after login (encryption not loaded)")
        sync_task = asyncio.create_task(client.sync_forever(timeout=1000, full_state=True))
        await wait_for("nio uploads its device keys", lambda: not client.should_upload_keys, WAIT_S)
        room = await call("nio creates an encrypted room", client.room_create(
            invite=[js_user], initial_state=[ENCRYPTION], name="nio+js"), RoomCreateResponse)
        room_id = room.room_id
        nio_text = f"nio-to-js-{tag}"
        state = {"js_user": js_user, "room_id": room_id, "nio_text": nio_text, "nio_ack_prefix": "ack:"}
        js_task = asyncio.create_task(run_js(state))

        def js_failed() -> str:
            if js_task is not None and js_task.done():
                rc, _out, err = js_task.result()
                raise ScenarioError(f"the js side ended early ({rc}):\n{err[-3000:]}")
            if sync_task is not None and sync_task.done():
                raise ScenarioError(f"nio's sync loop stopped: {sync_task.exception()!r}")
            return ""

        def js_ready() -> bool:
            js_failed()
            r = client.rooms.get(room_id)
            joined = r is not None and js_user in r.users and js_user not in r.invited_users
            return joined and bool(list(client.device_store.active_user_devices(js_user)))

        await wait_for("the js user joined and nio knows its device", js_ready, WAIT_S)
        await call("nio sends an encrypted message", client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": nio_text},
            ignore_unverified_devices=True), RoomSendResponse)

        def from_js() -> RoomMessageText | None:
            js_failed()
            return next((e for e in received if e.sender == js_user
                         and e.body.startswith("js-to-nio-")), None)

        event = await wait_for("nio decrypts the js message", from_js, WAIT_S,
                               detail=lambda: f"{len(undecrypted)} undecryptable megolm events")
        check(event.decrypted, f"the js message reached nio unencrypted: {event.source}")
        js_text = event.body
        await call("nio sends its ack", client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "ack:" + js_text},
            ignore_unverified_devices=True), RoomSendResponse)
        rc, out, err = await asyncio.wait_for(js_task, WAIT_S + 30)
        check(rc == 0, f"the js side failed ({rc}):\n{err[-3000:]}")
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        check(len(lines) == 1, f"js printed no result line: {out[-500:]}")
        js_secrets = json.loads(lines[0])["secrets"]
        check(js_text in js_secrets, f"nio decrypted {js_text!r}, js says it sent {js_secrets}")

        # The control: the same server keeps a message of an unencrypted room in the clear.
        plain_room = await call("nio creates an unencrypted room", client.room_create(name="plain"),
                                RoomCreateResponse)
        control = f"plain-nio-{tag}"
        await call("nio sends in the clear", client.room_send(
            plain_room.room_id, "m.room.message", {"msgtype": "m.text", "body": control}),
            RoomSendResponse)
        return [nio_text, js_text, "ack:" + js_text], [control]
    finally:
        for task in (sync_task, js_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await client.close()

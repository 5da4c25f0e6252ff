"""Dehydrated devices (MSC3814, as matrix-js-sdk and Element call it under
/unstable/org.matrix.msc3814.v1): a device a client parks on the server so that room keys
sent while none of the user's devices is online are kept for the next one to log in.

The server stores the client's encrypted pickle (device_data) and the device's keys, and
queues to-device messages for it like for any device; a new device of the user fetches them
through /dehydrated_device/{device_id}/events and deletes them as it goes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from veche.core.numbers import parse_count
from veche.errors import bad_json, forbidden, invalid_param, missing_param, not_found
from veche.services.e2e_keys import check_device_keys, parse_keys
from veche.storage import accounts as account_store
from veche.storage import dehydrated_devices as store
from veche.storage import e2e_keys as keys_store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

EVENTS_PER_BATCH = 100


class DehydratedDeviceService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def get(self, user_id: str) -> dict[str, Any]:
        found = await self.hs.db.run(store.get, user_id)
        if found is None:
            raise not_found("No dehydrated device")
        return {"device_id": found[0], "device_data": found[1]}

    async def put(self, user_id: str, body: dict[str, Any]) -> str:
        device_id, device_data = body.get("device_id"), body.get("device_data")
        if device_id is None or device_data is None:
            raise missing_param("device_id and device_data are required")
        if not isinstance(device_id, str) or not device_id or len(device_id) > 255:
            raise bad_json("device_id must be a non-empty string of at most 255 characters")
        if not isinstance(device_data, dict):
            raise bad_json("device_data must be an object")
        name = body.get("initial_device_display_name")
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise bad_json("initial_device_display_name must be a short string")
        if body.get("device_keys") is None:
            raise missing_param("device_keys are required")
        # Refuse bad keys before the old dehydrated device is replaced.
        check_device_keys(body["device_keys"], user_id, device_id)
        parse_keys(body.get("one_time_keys"), "one_time_keys")
        parse_keys(body.get("fallback_keys"), "fallback_keys")

        def replace(txn: Txn, pos: int) -> None:
            old = store.get(txn, user_id)
            if account_store.get_device(txn, user_id, device_id) is not None and (
                    old is None or old[0] != device_id):
                raise invalid_param("A device with this ID already exists")
            if old is not None:
                account_store.delete_devices(txn, user_id, [old[0]])
            account_store.upsert_device(txn, user_id, device_id, name, int(time.time() * 1000))
            store.put(txn, user_id, device_id, device_data)
            # Every taken stream position is held by a row (see e2e_keys.upload).
            keys_store.mark_changed(txn, [user_id], pos)

        with self.hs.stream.get_next() as pos:
            await self.hs.db.run(replace, pos)
        keys = {k: body[k] for k in ("device_keys", "one_time_keys", "fallback_keys") if k in body}
        try:
            await self.hs.e2e_keys.upload(user_id, device_id, keys)
        except Exception:
            # Keys the server refuses leave no half-made device behind.
            with self.hs.stream.get_next() as pos:
                await self.hs.db.run(self._drop, user_id, device_id, pos)
            raise
        await self.hs.e2e_keys.notify_changed(user_id)
        return device_id

    async def delete(self, user_id: str) -> str:
        def remove(txn: Txn, pos: int) -> str | None:
            found = store.get(txn, user_id)
            if found is not None:
                account_store.delete_devices(txn, user_id, [found[0]])
            keys_store.mark_changed(txn, [user_id], pos)
            return found[0] if found else None

        with self.hs.stream.get_next() as pos:
            device_id = await self.hs.db.run(remove, pos)
        if device_id is None:
            raise not_found("No dehydrated device")
        await self.hs.e2e_keys.notify_changed(user_id)
        return device_id

    @staticmethod
    def _drop(txn: Txn, user_id: str, device_id: str, pos: int) -> None:
        account_store.delete_devices(txn, user_id, [device_id])
        keys_store.mark_changed(txn, [user_id], pos)

    async def events(self, user_id: str, device_id: str, next_batch: Any) -> dict[str, Any]:
        after = 0 if next_batch is None else (
            parse_count(next_batch) if isinstance(next_batch, str) else None)
        if after is None:
            raise invalid_param("Invalid next_batch")
        upto = self.hs.stream.current

        def take(txn: Txn) -> list[tuple[int, dict[str, Any]]]:
            found = store.get(txn, user_id)
            if found is None or found[0] != device_id:
                raise forbidden("That is not your dehydrated device")
            return store.take_messages(txn, user_id, device_id, after, upto, EVENTS_PER_BATCH)

        messages = await self.hs.db.run(take)
        return {"events": [m for _, m in messages],
                "next_batch": str(messages[-1][0] if messages else after)}

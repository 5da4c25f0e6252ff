"""Device lists across servers (spec: server-server API "Device Management" and
"End-to-End Encryption").

Outbound: after any change to a local user's devices or cross-signing keys (`announce`, from
E2eKeysService.notify_changed), what changed since the last announcement is queued, in the
same transaction that records it, for every server sharing a room with the user: one
m.device_list_update per device (stream_id counting up per user, prev_id the one before)
and an m.signing_key_update for new cross-signing keys. Device display names are not sent
(as Synapse does by default: they say too much about their owner).

Inbound: a remote user's device list is kept while they share a room with a local user. An
update whose prev_id is not the newest applied (a dropped update), or for a user with no
list here, marks the list stale and resyncs it (`GET /user/devices/{userId}`); a stale or
missing list is also resynced before a /keys/query answers from it, and so is one kept from
before the user last joined a room (while no room was shared, no update was sent here).
Each change reaches local syncs as a device_lists.changed entry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from veche.core.identifiers import server_name_of
from veche.federation.errors import FederationError, path
from veche.storage import e2e_keys as keys_store
from veche.storage import federation_queue as queue
from veche.storage import remote_devices as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

CROSS_SIGNING = ""  # the announced row that holds a user's cross-signing keys
RESYNC_TIMEOUT_S = 10
SEEN_KEPT = 50  # per remote user: stream_ids applied, for prev_ids that name an older one


def _now_ms() -> int:
    return int(time.time() * 1000)


class DeviceListService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._locks: dict[str, asyncio.Lock] = {}  # per user, local or remote
        self._resyncs: dict[str, asyncio.Task[bool]] = {}
        self._seen: dict[str, list[str]] = {}

    def is_local(self, user_id: str) -> bool:
        return user_id.partition(":")[2] == self.hs.server_name

    # --- outbound ---------------------------------------------------------------------------

    async def federation_view(self, user_id: str) -> dict[str, Any]:
        """A local user's devices and cross-signing keys as other servers are told of them:
        {"devices": {device_id: keys}, "master_key": ..., "self_signing_key": ...}."""
        got = await self.hs.e2e_keys.query("", {user_id: []}, local_only=True)
        devices = {}
        for device_id, keys in got["device_keys"].get(user_id, {}).items():
            unsigned = {k: v for k, v in (keys.get("unsigned") or {}).items()
                        if k != "device_display_name"}
            keys = {k: v for k, v in keys.items() if k != "unsigned"}
            if unsigned:
                keys["unsigned"] = unsigned
            devices[device_id] = keys
        view: dict[str, Any] = {"devices": devices}
        for name, out in (("master_keys", "master_key"), ("self_signing_keys", "self_signing_key")):
            if user_id in got[name]:
                view[out] = got[name][user_id]
        return view

    async def announce(self, user_id: str) -> None:
        """Queue what changed in a local user's device list since it was last announced."""
        if not self.hs.config.federation.enabled or not self.is_local(user_id):
            return
        client = self.hs.federation_client
        # Read and recorded under one lock: an older view recorded after a newer one would
        # announce the change undone, and one user's updates keep their stream_id order.
        async with self._lock(user_id):
            view = await self.federation_view(user_id)
            destinations = await self.hs.db.run(self._announce_txn, user_id, view, client.allowed)
        if destinations:
            self.hs.federation_sender.kick(sorted(destinations))

    def _announce_txn(self, txn: Txn, user_id: str, view: dict[str, Any],
                      allowed: Callable[[str], bool]) -> list[str]:
        before = store.announced(txn, user_id)
        edus: list[dict[str, Any]] = []
        stream_id = store.outbound_stream_id(txn, user_id)
        now: dict[str, Any] = dict(view["devices"])
        cross = {k: view[k] for k in ("master_key", "self_signing_key") if k in view}
        for device_id in sorted(set(now) | (set(before) - {CROSS_SIGNING})):
            if before.get(device_id) == now.get(device_id):
                continue
            content: dict[str, Any] = {"user_id": user_id, "device_id": device_id,
                                       "stream_id": stream_id + 1,
                                       "prev_id": [stream_id] if stream_id else []}
            if device_id in now:
                content["keys"] = now[device_id]
            else:
                content["deleted"] = True
            stream_id += 1
            edus.append({"edu_type": "m.device_list_update", "content": content})
            store.set_announced(txn, user_id, device_id, now.get(device_id))
        if cross and before.get(CROSS_SIGNING) != cross:
            edus.append({"edu_type": "m.signing_key_update", "content": {"user_id": user_id, **cross}})
            store.set_announced(txn, user_id, CROSS_SIGNING, cross)
        if not edus:
            return []
        store.set_outbound_stream_id(txn, user_id, stream_id)
        destinations = sorted(d for d in store.servers_sharing_rooms(txn, user_id)
                              if d != self.hs.server_name and allowed(d))
        for destination in destinations:
            for edu in edus:
                queue.enqueue_edu(txn, destination, edu, _now_ms())
        return destinations

    async def serve_user_devices(self, user_id: str) -> dict[str, Any]:
        """`GET /user/devices/{userId}` for a local user."""
        view = await self.federation_view(user_id)
        stream_id = await self.hs.db.run(store.outbound_stream_id, user_id)
        out: dict[str, Any] = {
            "user_id": user_id, "stream_id": stream_id,
            "devices": [{"device_id": d, "keys": k} for d, k in sorted(view["devices"].items())],
        }
        for name in ("master_key", "self_signing_key"):
            if name in view:
                out[name] = view[name]
        return out

    # --- inbound ----------------------------------------------------------------------------

    def _lock(self, user_id: str) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            if len(self._locks) > 10_000:
                self._locks = {u: v for u, v in self._locks.items() if v.locked()}
            lock = self._locks[user_id] = asyncio.Lock()
        return lock

    async def tracked(self, user_id: str) -> bool:
        """Whether a remote user's device list is kept here: they share a room with a local user."""
        return await self.hs.db.run(store.shares_room_with_server, user_id, self.hs.server_name)

    async def on_device_list_update(self, origin: str, content: dict[str, Any]) -> None:
        user_id, device_id = content.get("user_id"), content.get("device_id")
        stream_id, prev_ids = content.get("stream_id"), content.get("prev_id") or []
        if not (isinstance(user_id, str) and isinstance(device_id, str)) \
                or server_name_of(user_id) != origin or not isinstance(prev_ids, list) \
                or isinstance(stream_id, bool) or not isinstance(stream_id, int | str):
            return
        if not await self.tracked(user_id):
            # Updates of a user sharing no room are not followed: the list would go stale.
            await self.hs.db.run(store.mark_stale, user_id)
            return
        keys = content.get("keys")
        if not content.get("deleted") and keys is not None and not _device_keys_ok(keys, user_id, device_id):
            return
        async with self._lock(user_id):
            current = await self.hs.db.run(store.remote_list, user_id)
            known = set(self._seen.get(user_id, []))
            if current is not None and current[0] is not None:
                known.add(current[0])
            if current is None or current[1] or not prev_ids \
                    or not all(str(p) in known for p in prev_ids):
                logger.info("device list of %s: update %s after %s, have %s: resyncing",
                            user_id, stream_id, prev_ids, current)
                await self.hs.db.run(store.mark_stale, user_id)
                self.start_resync(user_id)
                return

            def apply(txn: Txn, pos: int) -> None:
                if content.get("deleted"):
                    store.delete_remote_device(txn, user_id, device_id)
                else:
                    store.set_remote_device(txn, user_id, device_id, keys,
                                            _str_or_none(content.get("device_display_name")))
                store.set_remote_list(txn, user_id, str(stream_id), pos)
                keys_store.mark_changed(txn, [user_id], pos)

            with self.hs.stream.get_next() as pos:
                await self.hs.db.run(apply, pos)
            seen = self._seen.setdefault(user_id, [])
            seen.append(str(stream_id))
            del seen[:-SEEN_KEPT]
        await self.hs.e2e_keys.notify_changed(user_id)

    async def on_signing_key_update(self, origin: str, content: dict[str, Any]) -> None:
        user_id = content.get("user_id")
        if not isinstance(user_id, str) or server_name_of(user_id) != origin:
            return
        if not await self.tracked(user_id):
            return
        keys = _cross_signing_keys(content, user_id)
        if not keys:
            return

        def save(txn: Txn, pos: int) -> None:
            for key_type, (public, key) in keys.items():
                keys_store.set_cross_signing_key(txn, user_id, key_type, public, key)
            keys_store.mark_changed(txn, [user_id], pos)

        with self.hs.stream.get_next() as pos:
            await self.hs.db.run(save, pos)
        await self.hs.e2e_keys.notify_changed(user_id)

    # --- resync -----------------------------------------------------------------------------

    def start_resync(self, user_id: str) -> asyncio.Task[bool]:
        """Fetch a remote user's whole device list (one request at a time per user)."""
        task = self._resyncs.get(user_id)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._resync(user_id))
            self._resyncs[user_id] = task
            task.add_done_callback(lambda t: self._resyncs.pop(user_id, None)
                                   if self._resyncs.get(user_id) is t else None)
        return task

    async def _resync(self, user_id: str) -> bool:
        server = server_name_of(user_id)
        try:
            answer = await self.hs.federation_client.get_json(
                server, path("/_matrix/federation/v1/user/devices/{}", user_id),
                timeout_s=RESYNC_TIMEOUT_S)
        except (FederationError, TimeoutError) as e:
            logger.info("device list resync of %s failed: %s", user_id, e)
            return False
        except Exception:
            logger.exception("device list resync of %s failed", user_id)
            return False
        devices = answer.get("devices")
        if answer.get("user_id") != user_id or not isinstance(devices, list):
            logger.info("device list resync of %s: a malformed answer", user_id)
            return False
        rows: list[tuple[str, dict[str, Any] | None, str | None]] = []
        for device in devices:
            if not isinstance(device, dict) or not isinstance(device.get("device_id"), str):
                continue
            keys = device.get("keys")
            if keys is not None and not _device_keys_ok(keys, user_id, device["device_id"]):
                keys = None
            rows.append((device["device_id"], keys, _str_or_none(device.get("device_display_name"))))
        cross = _cross_signing_keys(answer, user_id)
        stream_id = answer.get("stream_id")

        def save(txn: Txn, pos: int) -> None:
            store.replace_remote_devices(txn, user_id, rows)
            for key_type, (public, key) in cross.items():
                keys_store.set_cross_signing_key(txn, user_id, key_type, public, key)
            store.set_remote_list(txn, user_id, None if stream_id is None else str(stream_id), pos)
            keys_store.mark_changed(txn, [user_id], pos)

        with self.hs.stream.get_next() as pos:
            await self.hs.db.run(save, pos)
        self._seen.pop(user_id, None)
        await self.hs.e2e_keys.notify_changed(user_id)
        return True

    async def fresh_devices(self, user_id: str) -> dict[str, tuple[dict[str, Any], str | None]] | None:
        """A tracked remote user's devices, resynced first if stale or missing; None if the
        user is not tracked, or the resync failed."""
        if not await self.tracked(user_id):
            return None
        current = await self.hs.db.run(store.remote_list, user_id)
        if current is None or current[1]:
            # Shielded: a query that gives up must not cancel a resync others wait on.
            if not await asyncio.shield(self.start_resync(user_id)):
                return None
        return await self.hs.db.run(store.remote_devices, user_id)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _device_keys_ok(keys: Any, user_id: str, device_id: str) -> bool:
    return isinstance(keys, dict) and keys.get("user_id") == user_id \
        and keys.get("device_id") == device_id and isinstance(keys.get("keys"), dict)


def _cross_signing_keys(content: dict[str, Any], user_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """key_type -> (public key, key) of the well-formed master/self-signing keys in `content`."""
    out = {}
    for key_type in ("master", "self_signing"):
        key = content.get(f"{key_type}_key")
        if not isinstance(key, dict) or key.get("user_id") != user_id:
            continue
        usage = key.get("usage")
        keys = key.get("keys")
        if not isinstance(usage, list) or key_type not in usage or not isinstance(keys, dict) \
                or len(keys) != 1:
            continue
        (key_id, public), = keys.items()
        if isinstance(key_id, str) and key_id.startswith("ed25519:") and isinstance(public, str):
            out[key_type] = (public, key)
    return out

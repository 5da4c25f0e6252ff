"""Pushers and delivery to push gateways (spec: client-server API "Push Notifications" and
the Push Gateway API's /_matrix/push/v1/notify).

The send path only asks `wants_push` (an in-memory set) and, for the few members with
pushers whose rules say notify, queues a notification after the commit; a worker posts it to
each gateway through the SSRF-guarded connector, retries a failing gateway with backoff, and
drops push keys the gateway rejects. Pending pushes are not kept across a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from veche.core import push_rules as rules_core
from veche.errors import MatrixError, bad_json, invalid_param, missing_param
from veche.outbound import AddressPolicy, FilteringConnector
from veche.storage import events as ev_store
from veche.storage import pushers as store
from veche.storage import rooms as room_store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

NOTIFY_PATH = "/_matrix/push/v1/notify"
MAX_PENDING = 10_000
CONCURRENCY = 20
RETRIES = (1.0, 5.0, 30.0)
_STRINGS = {"app_id": 64, "pushkey": 512, "app_display_name": 256, "device_display_name": 256,
            "profile_tag": 32, "lang": 32}


@dataclass
class Push:
    user_id: str
    event: dict[str, Any]
    position: int
    actions: list[Any]
    sender_display_name: str | None


def validate_pusher(body: dict[str, Any]) -> dict[str, Any] | None:
    """The pusher to store, or None when the body deletes one (kind null)."""
    for name in ("app_id", "pushkey"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise missing_param(f"{name} is required") if name not in body else \
                bad_json(f"{name} must be a non-empty string")
    kind = body.get("kind", ...)
    if kind is ...:
        raise missing_param("kind is required")
    if kind is None:
        return None
    if kind != "http":
        raise invalid_param("Only http pushers are supported (this server sends no email)")
    missing = [n for n in ("app_display_name", "device_display_name", "lang", "data")
               if n not in body]
    if missing:
        raise missing_param(f"Missing parameters: {', '.join(missing)}")
    for name, most in _STRINGS.items():
        value = body.get(name)
        if value is None and name == "profile_tag":
            continue
        if not isinstance(value, str) or len(value) > most:
            raise bad_json(f"{name} must be a string of at most {most} characters")
    data = body["data"]
    if not isinstance(data, dict):
        raise bad_json("data must be an object")
    url = data.get("url")
    if not isinstance(url, str):
        raise missing_param("data.url is required for http pushers")
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname or split.path != NOTIFY_PATH:
        raise invalid_param(f"data.url must be an http(s) URL with the path {NOTIFY_PATH}")
    if data.get("format") not in (None, "event_id_only"):
        raise bad_json("data.format must be event_id_only if given")
    if not isinstance(body.get("append", False), bool):
        raise bad_json("append must be a boolean")
    if len(orjson.dumps(data)) > 4096:
        raise MatrixError(400, "M_TOO_LARGE", "data is too large")
    return {**{n: body.get(n) for n in _STRINGS}, "kind": kind, "data": data,
            "pushkey_ts": int(time.time() * 1000)}


def _tweaks(actions: list[Any]) -> dict[str, Any]:
    return {a["set_tweak"]: a.get("value", True) for a in actions
            if isinstance(a, dict) and isinstance(a.get("set_tweak"), str)}


class PusherService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.config = hs.config.push
        # Users with at least one pusher: a superset (deleting a device does not shrink it).
        self._users: set[str] = set(hs.db.run_sync(  # type: ignore[attr-defined]
            store.users_with_pushers))
        # Gateways answer at their own pace: a slow one must not hold up the others.
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._pending = 0
        self._session: aiohttp.ClientSession | None = None
        self.policy = AddressPolicy(self.config.ip_range_allowlist, self.config.ip_range_blacklist)

    # --- the client API ----------------------------------------------------------------------
    async def get(self, user_id: str) -> list[dict[str, Any]]:
        return await self.hs.db.run(store.get_pushers, user_id)

    async def set(self, user_id: str, device_id: str | None, body: dict[str, Any]) -> None:
        pusher = validate_pusher(body)
        if pusher is None:
            await self.hs.db.run(store.delete_pusher, user_id, body["app_id"], body["pushkey"])
            return
        await self.hs.db.run(store.set_pusher, user_id, device_id, pusher,
                             body.get("append", False))
        self._users.add(user_id)

    # --- the send path -------------------------------------------------------------------------
    def users_among(self, user_ids: Collection[str]) -> list[str]:
        """Those of `user_ids` with a pusher, walking the smaller of the two sets."""
        if len(self._users) < len(user_ids):
            return [u for u in self._users if u in user_ids]
        return [u for u in user_ids if u in self._users]

    def wants_push(self, user_id: str) -> bool:
        return self.config.enabled and user_id in self._users

    def queue_after_commit(self, txn: Txn, push: Push) -> None:
        txn.call_after(lambda: self._enqueue(push))

    def _enqueue(self, push: Push) -> None:
        self.hs.call_on_loop(self._start, push)

    def _start(self, push: Push) -> None:
        if self._pending >= MAX_PENDING:
            logger.warning("too many pushes pending: dropping one")
            return
        self._pending += 1
        self.hs.run_in_background(self._deliver_one(push))

    # --- delivery --------------------------------------------------------------------------------
    async def _deliver_one(self, push: Push) -> None:
        try:
            async with self._slots:
                await self._deliver(push)
        except Exception:
            logger.exception("push delivery failed")
        finally:
            self._pending -= 1

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _deliver(self, push: Push) -> None:
        event, user_id = push.event, push.user_id
        room_id = event["room_id"]

        def load(txn: Txn) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
            pushers = store.get_pushers(txn, user_id)
            if not pushers:
                return [], {}, 0
            summary = room_store.room_summaries(txn, [room_id]).get(room_id, {})
            rooms = ev_store.get_rooms_for_user(txn, user_id)
            # The stream may not have moved past the event yet: count up to it regardless.
            upto = max(push.position, self.hs.stream.current)
            counts = self.hs.push.unread_counts_txn(txn, user_id, rooms, upto)
            unread = sum(1 for c in counts.values() if any(n for n, _ in c.values()))
            return pushers, summary, unread

        pushers, summary, unread = await self.hs.db.run(load)
        tweaks = _tweaks(push.actions)
        for pusher in pushers:
            data = {k: v for k, v in pusher["data"].items() if k != "url"}
            notification: dict[str, Any] = {
                "event_id": event["event_id"], "room_id": room_id, "counts": {"unread": unread},
                "prio": "high" if event["type"] in ("m.room.message", "m.room.encrypted",
                                                    "m.call.invite") else "low",
                "devices": [{"app_id": pusher["app_id"], "pushkey": pusher["pushkey"],
                             "pushkey_ts": pusher["pushkey_ts"], "data": data, "tweaks": tweaks}],
            }
            if data.get("format") != "event_id_only":
                notification.update({"type": event["type"], "sender": event["sender"]})
                if push.sender_display_name:
                    notification["sender_display_name"] = push.sender_display_name
                for key, out in (("name", "room_name"), ("canonical_alias", "room_alias")):
                    if summary.get(key):
                        notification[out] = summary[key]
                if event["type"] == "m.room.member":
                    notification["user_is_target"] = event.get("state_key") == user_id
                if self.config.include_content:
                    notification["content"] = event.get("content", {})
            await self._post(user_id, pusher, {"notification": notification})

    async def _post(self, user_id: str, pusher: dict[str, Any], body: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=FilteringConnector(self.policy, use_dns_cache=False),
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        url = pusher["data"]["url"]
        for delay in (*RETRIES, None):
            try:
                async with self._session.post(url, json=body, allow_redirects=False) as resp:
                    if resp.status == 200:
                        answer = await resp.json(content_type=None)
                        rejected = answer.get("rejected") if isinstance(answer, dict) else None
                        if isinstance(rejected, list) and pusher["pushkey"] in rejected:
                            await self.hs.db.run(store.delete_pusher, user_id,
                                                 pusher["app_id"], pusher["pushkey"])
                        return
                    if 400 <= resp.status < 500 and resp.status != 429:
                        logger.warning("push gateway %s refused a push: %s", url, resp.status)
                        return
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
                logger.info("push gateway %s unreachable: %s", url, e)
            if delay is None:
                logger.warning("push to %s dropped after %d tries", url, len(RETRIES) + 1)
                return
            await asyncio.sleep(delay)


def notify_pushers(hs: HomeServer, txn: Txn, recipients: list[str], event: dict[str, Any],
                   pos: int, actions_for: Any, display_name: str | None) -> None:
    """Queue pushes for the recipients with pushers whose rules say notify."""
    pushers = hs.pushers
    for uid in recipients:
        if pushers.wants_push(uid):
            actions = actions_for(uid)
            if rules_core.actions_notify(actions):
                pushers.queue_after_commit(txn, Push(uid, event, pos, actions, display_name))

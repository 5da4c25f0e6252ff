"""Application services (spec: "Application Service API"): bridges and bots registered by
the operator in YAML files, with namespaces of users, aliases and rooms.

An application service acts through the client-server API with its as_token, as its sender
user or any user in its namespaces (identity assertion); it creates those users without a
password; and it receives every event of the rooms it is interested in, in order, as
transactions PUT to its URL. Transactions not yet accepted are retried with backoff while
the server runs; they are not kept across a restart.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from veche.errors import MatrixError
from veche.services.auth import Requester, hash_token
from veche.storage import accounts as account_store
from veche.storage import rooms as room_store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_TXN = 100
BACKOFF_MAX_S = 60.0
USER_MATCH_CACHE = 100_000


@dataclass
class Namespace:
    exclusive: bool
    regex: re.Pattern[str]


@dataclass
class ApplicationService:
    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender: str
    users: list[Namespace]
    aliases: list[Namespace]
    rooms: list[Namespace]
    receive_ephemeral: bool = False
    queue: list[dict[str, Any]] = field(default_factory=list)
    _user_matches: dict[str, bool] = field(default_factory=dict)

    def matches_user(self, user_id: str, server_name: str, exclusive_only: bool = False) -> bool:
        if not user_id.endswith(":" + server_name):
            return False  # only local users count for the users namespace
        if exclusive_only:
            return user_id == self.sender or any(
                ns.regex.fullmatch(user_id) for ns in self.users if ns.exclusive)
        # Asked for every member of a room on each event: remember the answer per user.
        known = self._user_matches.get(user_id)
        if known is None:
            known = user_id == self.sender or any(ns.regex.fullmatch(user_id) for ns in self.users)
            if len(self._user_matches) >= USER_MATCH_CACHE:
                self._user_matches.clear()
            self._user_matches[user_id] = known
        return known

    def matches_alias(self, alias: str, exclusive_only: bool = False) -> bool:
        return any(ns.regex.fullmatch(alias) for ns in self.aliases
                   if ns.exclusive or not exclusive_only)

    def matches_room(self, room_id: str) -> bool:
        return any(ns.regex.fullmatch(room_id) for ns in self.rooms)


def _namespaces(raw: Any, where: str) -> list[Namespace]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{where} must be a list")
    out = []
    for i, ns in enumerate(raw):
        if not isinstance(ns, dict) or not isinstance(ns.get("regex"), str) or \
                not isinstance(ns.get("exclusive", False), bool):
            raise ValueError(f"{where}[{i}] needs a regex string and an exclusive boolean")
        try:
            out.append(Namespace(ns.get("exclusive", False), re.compile(ns["regex"])))
        except re.error as e:
            raise ValueError(f"{where}[{i}].regex: {e}") from None
    return out


def load_registration(path: str, server_name: str) -> ApplicationService:
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a registration (a YAML mapping)")
    for key in ("id", "as_token", "hs_token", "sender_localpart"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ValueError(f"{path}: {key} must be a non-empty string")
    url = doc.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise ValueError(f"{path}: url must be an http(s) URL or null")
    namespaces = doc.get("namespaces") or {}
    if not isinstance(namespaces, dict):
        raise ValueError(f"{path}: namespaces must be a mapping")
    return ApplicationService(
        id=doc["id"], url=url.rstrip("/") if url else None, as_token=doc["as_token"],
        hs_token=doc["hs_token"], sender=f"@{doc['sender_localpart']}:{server_name}",
        users=_namespaces(namespaces.get("users"), f"{path}: namespaces.users"),
        aliases=_namespaces(namespaces.get("aliases"), f"{path}: namespaces.aliases"),
        rooms=_namespaces(namespaces.get("rooms"), f"{path}: namespaces.rooms"),
        receive_ephemeral=bool(doc.get("receive_ephemeral", False)),
    )


def load_registrations(paths: list[str], server_name: str) -> list[ApplicationService]:
    services = [load_registration(p, server_name) for p in paths]
    for attr in ("id", "as_token"):
        values = [getattr(s, attr) for s in services]
        if len(values) != len(set(values)):
            raise ValueError(f"application services must have unique {attr}s")
    return services


class AppServiceService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.services = load_registrations(hs.config.app_service_config_files, hs.server_name)
        self._wake: dict[str, asyncio.Event] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._txn_prefix = str(int(time.time() * 1000))
        if hs.cluster is not None:  # processes started in the same millisecond: distinct IDs
            self._txn_prefix += "-" + hs.cluster.worker
        self._txn_counter = 0
        if self.services:
            hs.db.run_sync(self._create_senders)  # type: ignore[attr-defined]

    def _create_senders(self, txn: Txn) -> None:
        now = int(time.time() * 1000)
        for service in self.services:
            if not account_store.user_exists(txn, service.sender):
                account_store.create_user(txn, service.sender, None, now)

    # --- identity ------------------------------------------------------------------------
    def for_token(self, token: str) -> ApplicationService | None:
        for service in self.services:
            if hmac.compare_digest(service.as_token.encode(), token.encode()):
                return service
        return None

    def exclusive_owner(self, user_id: str) -> ApplicationService | None:
        return next((s for s in self.services
                     if s.matches_user(user_id, self.hs.server_name, exclusive_only=True)), None)

    async def requester(self, service: ApplicationService, user_id: str | None,
                        device_id: str | None) -> Requester:
        """Identity assertion: the service's sender, or a user in its namespace."""
        user_id = user_id or service.sender
        if not service.matches_user(user_id, self.hs.server_name):
            raise MatrixError(403, "M_EXCLUSIVE",
                              "The application service may not act as this user")

        def check(txn: Txn) -> tuple[bool, bool]:
            exists = account_store.user_exists(txn, user_id)
            known = device_id is None or account_store.get_device(txn, user_id, device_id) is not None
            return exists, known

        exists, known_device = await self.hs.db.run(check)
        if not exists:
            raise MatrixError(403, "M_FORBIDDEN", "The application service has not registered this user")
        if not known_device:
            raise MatrixError(400, "M_UNKNOWN_DEVICE", "No such device for this user")
        return Requester(user_id, device_id or "", hash_token(service.as_token))

    # --- pushing events ------------------------------------------------------------------------
    def on_event_persisted(self, txn: Txn, event: dict[str, Any],
                           members: dict[str, str | None]) -> None:
        """Queue the event, after the commit, for every service interested in it."""
        interested = [s for s in self.services if s.url and self._interested(txn, s, event, members)]
        if interested:
            txn.call_after(lambda: self._queue(interested, event))

    def _interested(self, txn: Txn, service: ApplicationService, event: dict[str, Any],
                    members: dict[str, str | None]) -> bool:
        name = self.hs.server_name
        if service.matches_user(event["sender"], name) or service.matches_room(event["room_id"]):
            return True
        if event["type"] == "m.room.member" and service.matches_user(event.get("state_key", ""), name):
            return True
        if any(service.matches_user(u, name) for u in members):
            return True
        return bool(service.aliases) and any(
            service.matches_alias(a) for a in room_store.aliases_for_room(txn, event["room_id"]))

    def _queue(self, services: list[ApplicationService], event: dict[str, Any]) -> None:
        from veche.services.events import client_event

        formatted = client_event(event)
        for service in services:
            service.queue.append(formatted)
            self.hs.call_on_loop(self._kick, service)

    def _kick(self, service: ApplicationService) -> None:
        wake = self._wake.setdefault(service.id, asyncio.Event())
        wake.set()
        task = self._senders.get(service.id)
        if task is None or task.done():
            self._senders[service.id] = asyncio.get_running_loop().create_task(
                self._send_loop(service, wake))

    async def _send_loop(self, service: ApplicationService, wake: asyncio.Event) -> None:
        delay = 1.0
        while True:
            await wake.wait()
            wake.clear()
            while service.queue:
                batch = service.queue[:MAX_EVENTS_PER_TXN]
                self._txn_counter += 1
                txn_id = f"{self._txn_prefix}-{self._txn_counter}"
                # The same ID on every retry of this batch: the service drops repeats.
                while not await self._put_transaction(service, txn_id, batch):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
                delay = 1.0
                del service.queue[:len(batch)]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def _put_transaction(self, service: ApplicationService, txn_id: str,
                               events: list[dict[str, Any]]) -> bool:
        url = f"{service.url}/_matrix/app/v1/transactions/{txn_id}"
        try:
            async with self._http().put(url, json={"events": events}, headers={
                    "Authorization": f"Bearer {service.hs_token}"}) as resp:
                if resp.status == 200:
                    return True
                logger.warning("application service %s answered %s to a transaction",
                               service.id, resp.status)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            logger.warning("application service %s unreachable: %s", service.id, e)
        return False

    # --- ping ------------------------------------------------------------------------------------
    async def ping(self, service: ApplicationService, transaction_id: str | None) -> int:
        if not service.url:
            raise MatrixError(400, "M_URL_NOT_SET", "The application service has no URL")
        body = {"transaction_id": transaction_id} if transaction_id is not None else {}
        started = time.monotonic()
        try:
            async with self._http().post(
                    f"{service.url}/_matrix/app/v1/ping", json=body,
                    headers={"Authorization": f"Bearer {service.hs_token}"},
                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise MatrixError(502, "M_BAD_STATUS", "The application service answered "
                                      f"{resp.status}", status=resp.status, body=text[:1000])
        except TimeoutError:
            raise MatrixError(504, "M_CONNECTION_TIMEOUT", "The application service timed out") from None
        except (aiohttp.ClientError, OSError) as e:
            raise MatrixError(502, "M_CONNECTION_FAILED", f"Could not reach the application service: {e}") from None
        return int((time.monotonic() - started) * 1000)

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued event has been delivered; False if some are still queued
        at `timeout` (a service that is down keeps them queued)."""
        deadline = time.monotonic() + timeout
        while any(s.queue for s in self.services if s.url):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        for task in self._senders.values():
            task.cancel()
        if self._session is not None:
            await self._session.close()

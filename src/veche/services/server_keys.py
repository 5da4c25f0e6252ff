"""Signing keys between servers: ours as published at /_matrix/key/v2/server, other servers'
fetched from them directly or through the configured notaries (trusted_key_servers, none by
default), checked, and kept in the database until they expire; and answering as a notary."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from signedjson.key import encode_verify_key_base64, get_verify_key
from signedjson.types import VerifyKey

from veche.config import TrustedKeyServer
from veche.core.server_keys import (
    KeyResponseError,
    ServerKeys,
    countersign,
    decode_key,
    key_id_of,
    own_keys_response,
    parse_keys_response,
    verify_json,
)
from veche.federation.errors import FederationError
from veche.keys import load_old_verify_keys
from veche.storage import server_keys as store

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

# Our response says its keys are good for a day (Synapse's default) and is re-signed hourly,
# so it never promises less than 23 hours.
OWN_VALIDITY_MS = 24 * 3600 * 1000
OWN_RESIGN_MS = 3600 * 1000
# A server whose keys were fetched (or failed to be) is not asked again sooner: unknown key
# IDs in forged requests must not turn us into a request amplifier.
REFETCH_AFTER_S = 60.0
KEY_FETCH_TIMEOUT_S = 15.0
MAX_KEY_RESPONSE_BYTES = 512 * 1024
# Decoded stored keys kept in memory: every request and every PDU from a server needs one.
MAX_CACHED_KEYS = 10_000


def now_ms() -> int:
    return int(time.time() * 1000)


class ServerKeyService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.server_name = hs.server_name
        self._own: dict[str, Any] | None = None
        self._own_signed_at = 0
        self._last_fetch: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Task[bool]] = {}
        # (server, key ID) -> (key, valid_until_ts, is_old), as stored; emptied on a store.
        self._stored: dict[tuple[str, str], tuple[VerifyKey, int, bool]] = {}

    # --- our keys -------------------------------------------------------------------
    def own_old_verify_keys(self) -> dict[str, dict[str, Any]]:
        current = key_id_of(self.hs.signing_key)
        return {k: v for k, v in load_old_verify_keys(self.hs.data_dir).items() if k != current}

    def own_response(self) -> dict[str, Any]:
        now = now_ms()
        if self._own is None or now - self._own_signed_at >= OWN_RESIGN_MS:
            self._own = own_keys_response(self.server_name, self.hs.signing_key,
                                          self.own_old_verify_keys(), now + OWN_VALIDITY_MS)
            self._own_signed_at = now
        return self._own

    # --- other servers' keys --------------------------------------------------------
    async def get_verify_key(self, server_name: str, key_id: str,
                             valid_at_ts: int | None = None) -> VerifyKey | None:
        """`server_name`'s key `key_id` if it is valid at `valid_at_ts`, fetching the
        server's keys when not known. Without `valid_at_ts`: a current key valid now, what a
        request must be signed with (old keys only verify events signed before they expired)."""
        at = now_ms() if valid_at_ts is None else valid_at_ts
        current_only = valid_at_ts is None
        if server_name == self.server_name:
            return self._own_key(key_id, at, current_only)
        key = await self._stored_key(server_name, key_id, at, current_only)
        if key is None and await self.fetch_keys(server_name):
            key = await self._stored_key(server_name, key_id, at, current_only)
        return key

    def _own_key(self, key_id: str, at: int, current_only: bool) -> VerifyKey | None:
        signing_key = self.hs.signing_key
        if key_id == key_id_of(signing_key):
            return get_verify_key(signing_key)
        old = None if current_only else self.own_old_verify_keys().get(key_id)
        if old is not None and old["expired_ts"] >= at:
            return decode_key(key_id, old["key"])
        return None

    async def _stored_key(self, server_name: str, key_id: str, at: int,
                          current_only: bool) -> VerifyKey | None:
        stored = self._stored.get((server_name, key_id))
        if stored is None:
            row = await self.hs.db.run(store.get_server_key, server_name, key_id)
            if row is None:
                return None
            stored = (decode_key(key_id, row[1]), row[2], row[3])
            if len(self._stored) >= MAX_CACHED_KEYS:
                self._stored.clear()
            self._stored[(server_name, key_id)] = stored
        key, valid_until_ts, is_old = stored
        if valid_until_ts < at or (current_only and is_old):
            return None
        return key

    async def fetch_keys(self, server_name: str) -> bool:
        """Fetch and store `server_name`'s keys; whether any new answer came. At most once
        per REFETCH_AFTER_S per server, concurrent callers sharing one fetch."""
        inflight = self._inflight.get(server_name)
        if inflight is not None:
            return await asyncio.shield(inflight)
        last = self._last_fetch.get(server_name)
        if last is not None and time.monotonic() - last < REFETCH_AFTER_S:
            return False
        if not self.hs.federation_client.allowed(server_name):
            return False
        self._last_fetch[server_name] = time.monotonic()
        if len(self._last_fetch) > 10_000:
            cutoff = time.monotonic() - REFETCH_AFTER_S
            self._last_fetch = {s: t for s, t in self._last_fetch.items() if t > cutoff}
        task = asyncio.ensure_future(self._fetch(server_name))
        self._inflight[server_name] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._inflight.pop(server_name, None)
            else:
                task.add_done_callback(lambda _: self._inflight.pop(server_name, None))

    async def _fetch(self, server_name: str) -> bool:
        if await self._fetch_direct(server_name):
            return True
        for notary in self.hs.config.federation.trusted_key_servers:
            if notary.server_name != server_name and await self._fetch_via(notary, server_name):
                return True
        return False

    async def _fetch_direct(self, server_name: str) -> bool:
        client = self.hs.federation_client
        try:
            response = await client.get_json(server_name, "/_matrix/key/v2/server",
                                             max_bytes=MAX_KEY_RESPONSE_BYTES,
                                             timeout_s=KEY_FETCH_TIMEOUT_S)
            fetched = now_ms()
            keys = parse_keys_response(response, server_name, fetched)
        except (FederationError, KeyResponseError) as e:
            logger.info("could not fetch the keys of %s: %s", server_name, e)
            return False
        await self._store(keys, response, server_name, fetched)
        return True

    async def _fetch_via(self, notary: TrustedKeyServer, server_name: str) -> bool:
        client = self.hs.federation_client
        try:
            answer = await client.post_json(
                notary.server_name, "/_matrix/key/v2/query", {"server_keys": {server_name: {}}},
                max_bytes=MAX_KEY_RESPONSE_BYTES, timeout_s=KEY_FETCH_TIMEOUT_S)
        except FederationError as e:
            logger.info("notary %s could not give the keys of %s: %s", notary.server_name,
                        server_name, e)
            return False
        stored = False
        entries = answer.get("server_keys")
        for response in entries if isinstance(entries, list) else []:
            try:
                fetched = now_ms()
                keys = parse_keys_response(response, server_name, fetched)
                if not await self._signed_by_notary(response, notary):
                    raise KeyResponseError(f"not signed by the notary {notary.server_name}")
            except KeyResponseError as e:
                logger.warning("notary %s gave bad keys for %s: %s", notary.server_name,
                               server_name, e)
                continue
            await self._store(keys, response, notary.server_name, fetched)
            stored = True
        return stored

    async def _signed_by_notary(self, response: dict[str, Any], notary: TrustedKeyServer) -> bool:
        sigs = response.get("signatures", {}).get(notary.server_name, {})
        if notary.verify_keys:
            candidates = [decode_key(k, v) for k, v in notary.verify_keys.items() if k in sigs]
        else:  # not pinned: the notary's own current keys, fetched from it
            candidates = [k for k in [await self.get_verify_key(notary.server_name, key_id)
                                      for key_id in sigs if key_id.startswith("ed25519:")] if k]
        return any(verify_json(response, notary.server_name, key) for key in candidates)

    async def _store(self, keys: ServerKeys, response: dict[str, Any], from_server: str,
                     fetched: int) -> None:
        rows: list[store.KeyRow] = [
            (key_id, encode_verify_key_base64(key), keys.valid_until_ts, False)
            for key_id, key in keys.verify_keys.items()]
        rows += [(key_id, encode_verify_key_base64(key), expired, True)
                 for key_id, (key, expired) in keys.old_verify_keys.items()
                 if key_id not in keys.verify_keys]
        # Kept as the origin signed it, for serving as a notary with our signature added.
        own_copy = dict(response)
        own_copy["signatures"] = {keys.server_name: response["signatures"][keys.server_name]}
        await self.hs.db.run(store.store_server_keys, keys.server_name, rows, fetched,
                             from_server, own_copy)
        self._stored.clear()

    # --- notary ---------------------------------------------------------------------
    async def query(self, criteria: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Key responses for the servers asked about, each countersigned by us: ours, those
        cached (even expired ones: old events' signatures still need them), fetched directly
        when the cache cannot satisfy minimum_valid_until_ts."""
        now = now_ms()
        wanted: dict[str, tuple[int, set[str]]] = {}
        for server_name, key_criteria in criteria.items():
            minimum = now
            for crit in key_criteria.values():
                value = crit.get("minimum_valid_until_ts") if isinstance(crit, dict) else None
                if isinstance(value, int) and not isinstance(value, bool):
                    minimum = max(minimum, value)
            wanted[server_name] = (minimum, set(key_criteria))
        results: list[dict[str, Any]] = []
        others = [s for s in wanted if s != self.server_name]
        if self.server_name in wanted:
            results.append(self.own_response())
        cached = await self.hs.db.run(store.get_server_keys_json, others)
        stale = [s for s in others if not _satisfies(cached.get(s), *wanted[s])]
        if stale:
            await asyncio.gather(*(self.fetch_keys(s) for s in stale))
            cached.update(await self.hs.db.run(store.get_server_keys_json, stale))
        key = self.hs.signing_key
        for server_name in others:
            if server_name in cached:
                results.append(countersign(cached[server_name][1], self.server_name, key))
        return results


def _satisfies(cached: tuple[int, dict[str, Any]] | None, minimum: int, key_ids: set[str]) -> bool:
    if cached is None:
        return False
    response = cached[1]
    known = set(response.get("verify_keys", {})) | set(response.get("old_verify_keys", {}))
    return response.get("valid_until_ts", 0) >= minimum and key_ids <= known

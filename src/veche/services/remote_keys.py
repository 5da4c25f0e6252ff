"""Client /keys/query and /keys/claim for users of other servers (spec: client-server API
"End-to-End Encryption", server-server API `POST /user/keys/query`, `/user/keys/claim`).

Users are grouped per server, and each server is asked once, all servers at once, within the
request's timeout (10 s by default). A server that fails or is too slow is named in
`failures`; what the others answered is still returned. Users sharing a room with a local
user are answered from their device list kept here (services/device_lists.py), resynced
first if it is stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from veche.core.identifiers import server_name_of
from veche.federation.errors import FederationError, HttpResponseError
from veche.storage import e2e_keys as keys_store

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 10_000
MAX_TIMEOUT_MS = 60_000
F1 = "/_matrix/federation/v1"


def timeout_s(timeout_ms: Any) -> float:
    ms = timeout_ms if isinstance(timeout_ms, int) and not isinstance(timeout_ms, bool) \
        and timeout_ms > 0 else DEFAULT_TIMEOUT_MS
    return min(ms, MAX_TIMEOUT_MS) / 1000


def by_server(users: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for user_id, value in users.items():
        server = user_id.partition(":")[2]
        if server:
            out.setdefault(server, {})[user_id] = value
    return out


def _failure(error: BaseException) -> dict[str, Any]:
    if isinstance(error, HttpResponseError):
        return {"status": error.status, "message": str(error)[:200]}
    if isinstance(error, TimeoutError):
        return {"status": 504, "message": "Timed out"}
    return {"status": 503, "message": str(error)[:200] or type(error).__name__}


async def _each_server(servers: dict[str, Any], timeout: float, failures: dict[str, Any],
                       ask: Callable[[str, Any], Awaitable[None]]) -> None:
    async def one(server: str, value: Any) -> None:
        try:
            await asyncio.wait_for(ask(server, value), timeout)
        except (FederationError, TimeoutError, ValueError) as e:
            logger.info("keys from %s: %s", server, e)
            failures[server] = _failure(e)
        except Exception as e:
            logger.exception("keys from %s failed", server)
            failures[server] = _failure(e)

    await asyncio.gather(*(one(s, v) for s, v in servers.items()))


async def query(hs: HomeServer, wanted: dict[str, list[str]], timeout: float) -> dict[str, Any]:
    """device_keys, master_keys, self_signing_keys and failures for remote users."""
    result: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {},
                              "failures": {}}

    async def ask(server: str, users: dict[str, list[str]]) -> None:
        direct: dict[str, list[str]] = {}
        for user_id, devices in users.items():
            kept = await hs.device_lists.fresh_devices(user_id)
            if kept is None:
                direct[user_id] = devices
                continue
            out = {}
            for device_id, (keys, _name) in kept.items():
                if not devices or device_id in devices:
                    out[device_id] = keys
            result["device_keys"][user_id] = out
            cross = (await hs.db.run(keys_store.get_cross_signing_keys, [user_id])).get(user_id, {})
            for key_type, name in (("master", "master_keys"), ("self_signing", "self_signing_keys")):
                if key_type in cross:
                    result[name][user_id] = cross[key_type]
        if not direct:
            return
        answer = await hs.federation_client.post_json(
            server, f"{F1}/user/keys/query", {"device_keys": direct}, timeout_s=timeout)
        for name in ("device_keys", "master_keys", "self_signing_keys"):
            got = answer.get(name)
            if not isinstance(got, dict):
                continue
            for user_id, value in got.items():
                # Only what was asked of this server, about its own users.
                if user_id in direct and server_name_of(user_id) == server and isinstance(value, dict):
                    result[name][user_id] = value

    await _each_server(by_server(wanted), timeout, result["failures"], ask)
    return result


async def claim(hs: HomeServer, wanted: dict[str, dict[str, str]], timeout: float) -> dict[str, Any]:
    """one_time_keys and failures for remote users' devices."""
    result: dict[str, Any] = {"one_time_keys": {}, "failures": {}}

    async def ask(server: str, users: dict[str, dict[str, str]]) -> None:
        answer = await hs.federation_client.post_json(
            server, f"{F1}/user/keys/claim", {"one_time_keys": users}, timeout_s=timeout)
        got = answer.get("one_time_keys")
        if not isinstance(got, dict):
            return
        for user_id, devices in got.items():
            if user_id in users and isinstance(devices, dict):
                result["one_time_keys"][user_id] = {
                    d: k for d, k in devices.items() if d in users[user_id] and isinstance(k, dict)}

    await _each_server(by_server(wanted), timeout, result["failures"], ask)
    return result

"""Server administration (spec: client-server API "Server Administration": whois, and
"Account moderation": locking and suspending accounts). For server admins only, except
that users may look themselves up."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.errors import bad_json, forbidden, not_found
from veche.http.base import CLIENT_V1, CLIENT_V3, hs_of, json_body, json_response, requester
from veche.services.auth import Requester
from veche.storage import accounts as store
from veche.storage import rooms as room_store

routes = web.RouteTableDef()


async def _admin(request: web.Request) -> Requester:
    req = await requester(request)
    if not await hs_of(request).db.run(room_store.is_admin, req.user_id):
        raise forbidden("Only server admins may do this")
    return req


async def _local_user(request: web.Request) -> str:
    user_id = request.match_info["user_id"]
    hs = hs_of(request)
    if not user_id.endswith(":" + hs.server_name) or await hs.db.run(
            store.get_moderation, user_id) is None:
        raise not_found("No such user on this server")
    return user_id


@routes.get(CLIENT_V3 + "/admin/whois/{user_id}")
async def whois(request: web.Request) -> web.Response:
    req = await requester(request)
    user_id = await _local_user(request)
    if user_id != req.user_id and not await hs_of(request).db.run(room_store.is_admin, req.user_id):
        raise forbidden("Only server admins may look up other users")
    devices = await hs_of(request).db.run(store.list_devices, user_id)
    out: dict[str, Any] = {}
    for d in devices:
        connection = {k: v for k, v in (("ip", d["last_seen_ip"]), ("last_seen", d["last_seen_ts"]))
                      if v is not None}
        out[d["device_id"]] = {"sessions": [{"connections": [connection] if connection else []}]}
    return json_response({"user_id": user_id, "devices": out})


def _moderation(flag: str) -> tuple[Any, Any]:
    async def get(request: web.Request) -> web.Response:
        await _admin(request)
        user_id = await _local_user(request)
        locked, suspended = await hs_of(request).db.run(store.get_moderation, user_id)
        return json_response({flag: locked if flag == "locked" else suspended})

    async def put(request: web.Request) -> web.Response:
        await _admin(request)
        user_id = await _local_user(request)
        body = await json_body(request)
        value = body.get(flag)
        if not isinstance(value, bool):
            raise bad_json(f"{flag} must be a boolean")
        hs = hs_of(request)
        await hs.db.run(store.set_moderation, user_id, flag, value)
        hs.auth.invalidate()  # cached sessions carry the old state
        return json_response({flag: value})

    return get, put


for _flag, _path in (("locked", "lock"), ("suspended", "suspend")):
    _get, _put = _moderation(_flag)
    routes.get(f"{CLIENT_V1}/admin/{_path}/{{user_id}}")(_get)
    routes.put(f"{CLIENT_V1}/admin/{_path}/{{user_id}}")(_put)

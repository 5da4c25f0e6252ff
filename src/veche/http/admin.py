"""Server administration (spec: client-server API "Server Administration": whois, and
"Account moderation": locking and suspending accounts). For server admins only, except
that users may look themselves up."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.errors import bad_json
from veche.http.base import CLIENT_V1, CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/admin/whois/{user_id}")
async def whois(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(await hs_of(request).admin.whois(req.user_id, request.match_info["user_id"]))


def _moderation(flag: str) -> tuple[Any, Any]:
    async def get(request: web.Request) -> web.Response:
        req = await requester(request)
        locked, suspended = await hs_of(request).admin.moderation(
            req.user_id, request.match_info["user_id"])
        return json_response({flag: locked if flag == "locked" else suspended})

    async def put(request: web.Request) -> web.Response:
        req = await requester(request)
        await hs_of(request).admin.require_admin(req.user_id)
        body = await json_body(request)
        value = body.get(flag)
        if not isinstance(value, bool):
            raise bad_json(f"{flag} must be a boolean")
        await hs_of(request).admin.set_moderation(
            req.user_id, request.match_info["user_id"], flag, value)
        return json_response({flag: value})

    return get, put


for _flag, _path in (("locked", "lock"), ("suspended", "suspend")):
    _get, _put = _moderation(_flag)
    routes.get(f"{CLIENT_V1}/admin/{_path}/{{user_id}}")(_get)
    routes.put(f"{CLIENT_V1}/admin/{_path}/{{user_id}}")(_put)

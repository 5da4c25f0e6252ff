"""Presence (spec: client-server API "Presence")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import MatrixError, bad_json, forbidden
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester
from veche.services.presence import STATES

routes = web.RouteTableDef()


@routes.put(CLIENT_V3 + "/presence/{user_id}/status")
async def put_status(request: web.Request) -> web.Response:
    req = await requester(request)
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("Cannot set presence for other users")
    body = await json_body(request)
    presence = body.get("presence")
    if presence not in STATES:
        raise MatrixError(400, "M_INVALID_PARAM", "presence must be online, offline or unavailable")
    status_msg = body.get("status_msg")
    if status_msg is not None and not isinstance(status_msg, str):
        raise bad_json("status_msg must be a string")
    await hs_of(request).presence.set_state(req.user_id, presence, status_msg)
    return json_response({})


@routes.get(CLIENT_V3 + "/presence/{user_id}/status")
async def get_status(request: web.Request) -> web.Response:
    req = await requester(request)
    user_id = request.match_info["user_id"]
    return json_response(await hs_of(request).presence.status_for(req.user_id, user_id))

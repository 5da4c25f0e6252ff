"""Typing notifications (spec: client-server API "Typing Notifications")."""

from __future__ import annotations

from aiohttp import web

from veche.core.numbers import is_safe_int
from veche.errors import bad_json, forbidden
from veche.http.base import (
    CLIENT_V3,
    hs_of,
    json_body,
    json_response,
    requester,
    require_not_suspended,
)

routes = web.RouteTableDef()


@routes.put(CLIENT_V3 + "/rooms/{room_id}/typing/{user_id}")
async def set_typing(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    require_not_suspended(req)
    room_id = request.match_info["room_id"]
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("Cannot set typing for other users")
    body = await json_body(request)
    typing, timeout = body.get("typing"), body.get("timeout", 30_000)
    if not isinstance(typing, bool):
        raise bad_json("typing must be a boolean")
    if not is_safe_int(timeout) or timeout < 0:
        raise bad_json("timeout must be a non-negative integer")
    await hs.typing.set_own_typing(room_id, req.user_id, typing, timeout)
    return json_response({})

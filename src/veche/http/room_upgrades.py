"""Room upgrades (client-server API "Room Upgrades")."""

from __future__ import annotations

from aiohttp import web

from veche.http.base import (
    CLIENT_V3,
    hs_of,
    json_body,
    json_response,
    requester,
    require_not_suspended,
)

routes = web.RouteTableDef()


@routes.post(CLIENT_V3 + "/rooms/{roomId}/upgrade")
async def upgrade(request: web.Request) -> web.Response:
    req = await requester(request)
    require_not_suspended(req)
    body = await json_body(request)
    new_room = await hs_of(request).room_creation.upgrade(req.user_id, request.match_info["roomId"], body)
    return json_response({"replacement_room": new_room})

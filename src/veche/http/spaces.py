"""Spaces and room summaries (spec: client-server API "Spaces": /hierarchy, and "Room
summaries": /room_summary; server-server API "Spaces": /hierarchy for other servers)."""

from __future__ import annotations

from aiohttp import web

from veche.http.base import (
    CLIENT_V1,
    access_token_of,
    hs_of,
    json_response,
    query_bool,
    query_int,
    requester,
)
from veche.http.federation import FEDERATION_V1, federation_origin
from veche.services.rooms import check_room_id

routes = web.RouteTableDef()
federation_routes = web.RouteTableDef()


@routes.get(CLIENT_V1 + "/rooms/{room_id}/hierarchy")
async def hierarchy(request: web.Request) -> web.Response:
    req = await requester(request)
    room_id = check_room_id(request.match_info["room_id"])
    return json_response(await hs_of(request).spaces.hierarchy(
        req.user_id, room_id,
        limit=query_int(request, "limit", minimum=1),
        max_depth=query_int(request, "max_depth", minimum=0),
        suggested_only=query_bool(request, "suggested_only"),
        from_token=request.query.get("from"),
    ))


@routes.get(CLIENT_V1 + "/room_summary/{room}")
async def room_summary(request: web.Request) -> web.Response:
    # Anyone may ask about rooms that are open to all (public, knockable, world-readable).
    user_id = (await requester(request)).user_id if access_token_of(request) is not None else None
    return json_response(await hs_of(request).spaces.summary(user_id, request.match_info["room"]))


@federation_routes.get(FEDERATION_V1 + "/hierarchy/{room_id}")
async def federation_hierarchy(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    return json_response(await hs_of(request).spaces.serve_hierarchy(
        origin, request.match_info["room_id"], query_bool(request, "suggested_only")))
